/*
 * follow_batch.c — the follower's batch: changes copied out of NATS, checked, deduplicated,
 * handed to jsonl as JSON Lines and applied; the refusals told (logged, counted, kept).
 */
#include "follow_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvkey.h"
#include "log.h"

int fl_grow(void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 1024;
	while (ncap < need)
		ncap *= 2;
	void *q = realloc(*p, ncap * size);
	if (!q)
		return -ENOMEM;
	*p = q, *cap = ncap;
	return 0;
}

void batch_reset(batch_t *b)
{
	b->n = b->used = b->nlines = 0;
	b->last = 0;
	b->rc = b->prep_rc = 0;
	b->released = false;
}

/* Frees what b holds (its changes, their parse), keeping its position and count: for a
 * batch applied whose commit is all that is left. */
void batch_release(batch_t *b)
{
	free(b->e), free(b->str), free(b->line);
	jsonl_free(b->j);
	b->e = NULL, b->str = NULL, b->line = NULL, b->j = NULL;
	b->n = b->cap = b->used = b->str_cap = b->nlines = b->line_cap = 0;
	b->released = true;
}

void batch_free(batch_t *b)
{
	free(b->e), free(b->str), free(b->line);
	jsonl_free(b->j);
	memset(b, 0, sizeof(*b));
}

bool fl_skipped(const follow_t *fl, uint64_t seq)
{
	for (size_t i = 0; i < fl->nskip; i++)
		if (fl->skip[i] == seq)
			return true;
	return false;
}

/* Refuses entry e of b, keeping why in the batch for fl_report() (which may run on another
 * thread, later). Its first reason is the one told. */
static void refuse(batch_t *b, entry_t *e, const char *why)
{
	e->bad = true;
	if (e->why)
		return;
	size_t len = strlen(why);
	if (fl_grow((void **)&b->str, &b->str_cap, b->used + len + 1, 1) == 0) {
		memcpy(b->str + b->used, why, len + 1);
		e->why = 1 + b->used;
		b->used += len + 1;
	}
}

/* The refusals of b not told yet: each logged and counted once, however often its batch
 * is tried again, and remembered by its sequence (a full sync tried again skips it). */
void fl_report(follow_t *fl, batch_t *b)
{
	for (size_t i = 0; i < b->n; i++) {
		entry_t *e = &b->e[i];
		if (!e->bad || e->told || fl_skipped(fl, e->seq))
			continue;
		e->told = true;
		if (fl_grow((void **)&fl->skip, &fl->skip_cap, fl->nskip + 1, sizeof(*fl->skip)) ==
		    0)
			fl->skip[fl->nskip++] = e->seq;
		fl->st.skipped++;
		bool kept = e->retry && !e->superseded &&
		            pend_add(fl, key_of(b, e), e->op, b->str + e->val, e->len, e->seq) == 0;
		log_warn("event=follow status=skipped key=%s seq=%" PRIu64 " error=\"%s\"%s",
		         key_of(b, e), e->seq, e->why ? b->str + e->why - 1 : "out of memory",
		         kept ? " kept=yes" : "");
	}
}

/* Copies a message into batch b and checks what jsonl cannot: that the value is one line
 * and is the record its key names. */
int batch_add(batch_t *b, const kv_msg_t *m)
{
	size_t klen = strlen(m->key);
	int rc;
	if ((rc = fl_grow((void **)&b->e, &b->cap, b->n + 1, sizeof(*b->e))) ||
	    (rc = fl_grow((void **)&b->str, &b->str_cap, b->used + klen + m->len + 2, 1)))
		return rc;
	entry_t *e = &b->e[b->n++];
	*e = (entry_t){.key = b->used, .seq = m->seq, .op = m->op, .len = m->len};
	memcpy(b->str + b->used, m->key, klen + 1);
	b->used += klen + 1;
	e->val = b->used;
	memcpy(b->str + b->used, m->value, m->len);
	b->used += m->len;
	b->str[b->used++] = '\0';
	if (m->seq > b->last)
		b->last = m->seq;
	int kind = kvkey_kind(key_of(b, e));
	if (kind < 0) {
		refuse(b, e, "not a key of the registry's layout");
		return 0;
	}
	if (m->op != KV_PUT)
		return 0;
	const char *v = b->str + e->val;
	while (e->len && (v[e->len - 1] == '\n' || v[e->len - 1] == '\r'))
		e->len--;
	if (e->len == 0 || memchr(v, '\n', e->len) || memchr(v, '\0', e->len)) {
		refuse(b, e, "the value must be one JSON Lines record on one line");
		return 0;
	}
	char key[KVKEY_MAX], id[64], why[200];
	bool del;
	int vkind = kvkey_of_record(v, e->len, key, sizeof(key), &del, id, sizeof(id), why,
	                            sizeof(why));
	if (vkind < 0) {
		refuse(b, e, why);
	} else if (del) {
		refuse(b, e, "a value is a record, not a delete (delete the key instead)");
	} else if (vkind != kind || strcmp(key, key_of(b, e)) != 0) {
		snprintf(why, sizeof(why), "the record belongs under key %.100s", key);
		refuse(b, e, why);
	}
	return 0;
}

/* Live batches: the latest change of a key wins; a Machine's delete gives way to a put
 * of the same id (its move to another org) in the same batch. */
void batch_dedupe(batch_t *b)
{
	size_t cap = 16;
	while (cap < 2 * b->n)
		cap *= 2;
	size_t *slot = malloc(cap * sizeof(*slot));
	if (!slot)
		return; /* without the table every change is applied, in order: still right */
	for (size_t i = 0; i < cap; i++)
		slot[i] = SIZE_MAX;
	for (size_t i = b->n; i-- > 0;) { /* newest first */
		const char *k = key_of(b, &b->e[i]);
		uint64_t h = 1469598103934665603ULL;
		for (const char *p = k; *p; p++)
			h = (h ^ (uint8_t)*p) * 1099511628211ULL;
		size_t s = h & (cap - 1);
		while (slot[s] != SIZE_MAX && strcmp(key_of(b, &b->e[slot[s]]), k) != 0)
			s = (s + 1) & (cap - 1);
		if (slot[s] != SIZE_MAX)
			b->e[i].superseded = true;
		else
			slot[s] = i;
	}
	free(slot);
	for (size_t i = 0; i < b->n; i++) {
		entry_t *d = &b->e[i];
		if (d->superseded || d->bad || d->op == KV_PUT ||
		    kvkey_kind(key_of(b, d)) != KVKEY_MACHINE)
			continue;
		const char *id = strrchr(key_of(b, d), '.') + 1;
		for (size_t k = 0; k < b->n; k++) {
			const entry_t *p = &b->e[k];
			const char *pid = strrchr(key_of(b, p), '.');
			if (p->op == KV_PUT && !p->superseded && !p->bad && pid &&
			    strcmp(pid + 1, id) == 0 && kvkey_kind(key_of(b, p)) == KVKEY_MACHINE)
				d->superseded = true;
		}
	}
}

/* The batch as JSON Lines for jsonl: one line per live entry, a delete as the delete
 * record of its key; b->line maps the lines back to entries. */
typedef struct {
	batch_t *b;
	size_t next; /* the entry to look at next */
	int rc;      /* -ENOMEM: the lines were cut short */
	char del[KVKEY_MAX + 128];
} lines_t;

static const char *next_line(void *arg, size_t *len)
{
	lines_t *l = arg;
	batch_t *b = l->b;
	while (l->next < b->n) {
		size_t i = l->next++;
		entry_t *e = &b->e[i];
		if (e->bad || e->superseded)
			continue;
		const char *line = b->str + e->val;
		*len = e->len;
		if (e->op != KV_PUT) {
			if (kvkey_delete_record(key_of(b, e), l->del, sizeof(l->del))) {
				refuse(b, e, "not a key of the registry's layout");
				continue;
			}
			line = l->del, *len = strlen(l->del);
		}
		if ((l->rc = fl_grow((void **)&b->line, &b->line_cap, b->nlines + 1,
		                     sizeof(*b->line))))
			return NULL;
		b->line[b->nlines++] = i;
		return line;
	}
	return NULL;
}

/* The entry jsonl's message in b->err is about ("batch:LINE: ..."), or NULL. */
static entry_t *entry_of_error(batch_t *b)
{
	unsigned line = 0;
	if (sscanf(b->err, BATCH_NAME ":%u:", &line) != 1 || line == 0 || line > b->nlines)
		return NULL;
	return &b->e[b->line[line - 1]];
}

/* The reason in jsonl's message, without the "batch:LINE: " it starts with. */
static const char *reason(const char *err)
{
	const char *p = strchr(err, ':');
	p = p ? strchr(p + 1, ':') : NULL;
	return p ? p + 2 : err;
}

/* jsonl refused the batch (-EINVAL, b->err naming a line): the record on that line is
 * refused and -EAGAIN says to try the batch again without it; an error that names no
 * record of the batch is logged and rc returned. */
static int refuse_named(batch_t *b, int rc)
{
	entry_t *e = entry_of_error(b);
	if (!e) {
		log_error("event=follow status=failed reason=\"%s\"", b->err);
		return rc;
	}
	refuse(b, e, reason(b->err));
	e->retry = true;
	return -EAGAIN;
}

/* Parses batch b into b->j, refusing each line jsonl_parse refuses. */
int batch_parse(batch_t *b)
{
	for (;;) {
		jsonl_free(b->j);
		b->j = NULL;
		b->nlines = 0;
		lines_t l = {.b = b};
		int rc = jsonl_parse_lines(next_line, &l, BATCH_NAME, &b->j, b->err);
		if (!rc && l.rc) {
			jsonl_free(b->j);
			b->j = NULL;
			return l.rc;
		}
		if (rc != -EINVAL || (rc = refuse_named(b, rc)) != -EAGAIN)
			return rc;
	}
}

/* Applies the parsed batch b in txn. -EAGAIN: a record was refused, the transaction
 * must be thrown away and the batch tried again. */
int batch_apply(batch_t *b, reg_txn_t *txn)
{
	int rc = jsonl_apply(txn, b->j, false, b->err);
	return rc == -EINVAL ? refuse_named(b, rc) : rc;
}
