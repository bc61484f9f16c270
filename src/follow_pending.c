/*
 * follow_pending.c — changes refused for now (an org's delete while it has Machines, a
 * record before its org): kept, saved beside the registry, and tried again after each
 * batch until they apply or a later change of their key supersedes them.
 */
#include "follow_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static void pend_drop(follow_t *fl, size_t i)
{
	free(fl->pend[i].key);
	free(fl->pend[i].val);
	fl->pend[i] = fl->pend[--fl->npend];
}

/* A change of key at seq supersedes every kept change of key before it. */
void pend_supersede(follow_t *fl, const char *key, uint64_t seq)
{
	for (size_t i = fl->npend; i-- > 0;)
		if (fl->pend[i].seq < seq && strcmp(fl->pend[i].key, key) == 0)
			pend_drop(fl, i);
}

/* Keeps a refused change (once: a batch tried again refuses it again). */
int pend_add(follow_t *fl, const char *key, int op, const char *val, size_t len, uint64_t seq)
{
	pend_supersede(fl, key, seq);
	for (size_t i = 0; i < fl->npend; i++)
		if (strcmp(fl->pend[i].key, key) == 0)
			return 0; /* this one, or a later one, is kept already */
	int rc = fl_grow((void **)&fl->pend, &fl->pend_cap, fl->npend + 1, sizeof(*fl->pend));
	if (rc)
		return rc;
	pend_t *p = &fl->pend[fl->npend];
	*p = (pend_t){.key = strdup(key), .val = malloc(len + 1), .len = len, .seq = seq, .op = op};
	if (!p->key || !p->val) {
		free(p->key), free(p->val);
		return -ENOMEM;
	}
	memcpy(p->val, val, len);
	p->val[len] = '\0';
	fl->npend++;
	return 0;
}

void pend_clear(follow_t *fl)
{
	while (fl->npend)
		pend_drop(fl, fl->npend - 1);
}

/*
 * The kept changes outlive the process in a file beside the registry: its first line is
 * the tag of the commit it was written for (stream sequence and applied_ns), then one
 * change a line, "SEQ OP KEY VALUE". It is written (atomically) before each commit that
 * leaves changes kept, and removed after a commit that leaves none; a file whose tag is
 * not the registry's (a crash between the two) makes the next start sync in full, which
 * converges whatever was kept.
 */
int pend_save(follow_t *fl)
{
	const char *path = fl->o->pending_path;
	char tmp[4200];
	if (!path || fl->npend == 0)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	int bad = fprintf(f, "%" PRIu64 " %" PRIu64 "\n", fl->seq, fl->tag_ns) < 0;
	for (size_t i = 0; i < fl->npend && !bad; i++) {
		const pend_t *p = &fl->pend[i];
		bad = fprintf(f, "%" PRIu64 " %d %s %s\n", p->seq, p->op, p->key, p->val) < 0;
	}
	bad = bad || fflush(f) != 0 || fsync(fileno(f)) != 0;
	int e = errno;
	if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
		e = bad ? e : errno;
		unlink(tmp);
		return -(e ? e : EIO);
	}
	fl->pend_saved = true;
	return 0;
}

/* After a commit: no file when nothing is kept. */
void pend_forget(follow_t *fl)
{
	if (fl->npend == 0 && fl->pend_saved && fl->o->pending_path) {
		unlink(fl->o->pending_path);
		fl->pend_saved = false;
	}
}

/* Reads the file written for the registry's commit f. false: a file for another commit
 * (sync in full). No file: nothing kept. */
bool pend_load(follow_t *fl, const reg_follow_t *f)
{
	pend_clear(fl);
	fl->pend_saved = false;
	const char *path = fl->o->pending_path;
	FILE *in = path ? fopen(path, "r") : NULL;
	if (!in)
		return true;
	char *line = NULL;
	size_t cap = 0;
	uint64_t seq = 0, ns = 0;
	bool ok = getline(&line, &cap, in) > 0 &&
	          sscanf(line, "%" SCNu64 " %" SCNu64, &seq, &ns) == 2 && seq == f->seq &&
	          ns == f->applied_ns;
	ssize_t len;
	while (ok && (len = getline(&line, &cap, in)) > 0) {
		char *k = strchr(line, ' '), *o = k, *v;
		k = k ? strchr(k + 1, ' ') : NULL;
		v = k ? strchr(k + 1, ' ') : NULL;
		if (!v) {
			ok = false;
			break;
		}
		*k++ = '\0', *v++ = '\0';
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		ok = pend_add(fl, k, atoi(o + 1), v, strlen(v), strtoull(line, NULL, 10)) == 0;
	}
	free(line);
	fclose(in);
	fl->pend_saved = true;
	if (!ok) {
		log_warn("event=follow full-sync=needed reason=\"%s is not of the registry's last "
		         "commit\"",
		         path);
		pend_clear(fl);
	}
	return ok;
}

static int retry_fn(reg_txn_t *txn, void *arg)
{
	live_arg_t *a = arg;
	int rc = batch_apply(a->b, txn);
	if (rc || (rc = fl_put_position(a->fl, txn)))
		return rc;
	pend_clear(a->fl); /* kept: what is refused again */
	for (size_t i = 0; i < a->b->n && !rc; i++) {
		entry_t *e = &a->b->e[i];
		if (e->bad && !e->superseded)
			rc = pend_add(a->fl, key_of(a->b, e), e->op, a->b->str + e->val, e->len,
			              e->seq);
	}
	return rc ? rc : pend_save(a->fl);
}

/* Tries the kept changes again, together, in one transaction (judged at their end
 * state, as a batch is). Those refused again stay kept, and are not logged again; when
 * none applies, nothing is written. */
int pend_retry(follow_t *fl)
{
	batch_t b = {0};
	live_arg_t arg = {.fl = fl, .b = &b};
	int rc = 0;
	for (size_t i = 0; i < fl->npend && !rc; i++) {
		const pend_t *p = &fl->pend[i];
		kv_msg_t m = {
		        .key = p->key, .value = p->val, .len = p->len, .op = p->op, .seq = p->seq};
		rc = batch_add(&b, &m);
	}
	for (size_t i = 0; i < b.n; i++)
		b.e[i].told = true;
	if (!rc) {
		batch_dedupe(&b);
		rc = batch_parse(&b);
	}
	fl->tag_ns = clock_wall_ns();
	while (!rc && jsonl_count(b.j) > 0 && (rc = reg_write(fl->reg, retry_fn, &arg)) == -EAGAIN)
		rc = batch_parse(&b);
	if (!rc && jsonl_count(b.j) > 0) {
		pend_forget(fl);
		fl->st.applied += jsonl_count(b.j);
		for (size_t i = 0; i < b.n; i++)
			if (!b.e[i].bad && !b.e[i].superseded)
				log_info("event=follow status=applied key=%s seq=%" PRIu64
				         " kept=%zu",
				         key_of(&b, &b.e[i]), b.e[i].seq, fl->npend);
	}
	batch_free(&b);
	return rc;
}
