/*
 * follow.c — the follower: the fleet's KV bucket into this host's registry.
 *
 * Changes are gathered into a batch (copied out of NATS), handed to jsonl as JSON Lines
 * — a put is its value, a delete the delete record of its key — and written with
 * jsonl_apply inside reg_write(), together with reg_put_follow(). A value
 * that jsonl refuses is remembered by its stream sequence and the batch is parsed or
 * applied again without it: a transaction is never committed half-applied. This file
 * must never learn the registry's key layout nor call NATS other than through kv.h.
 *
 * Live, a second thread gathers and parses the next batch while this one writes the
 * current one (its transaction's commit waits for the disk): a batch owns everything it
 * needs (its parse, its error text, the reasons its entries were refused), and only
 * the writing thread logs and counts refusals, keeps the sequences refused and the
 * statistics.
 */
#include "follow.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "jsonl.h"
#include "kv.h"
#include "kvkey.h"
#include "log.h"
#include "metrics_http.h"

#define FULL_CHUNK 20000 /* records parsed at once during a full sync (or --batch) */
/* changes per live transaction: a follower behind catches up in few commits, and each
 * commit writes most of the pages a large registry's start/stops touch however many
 * changes it holds */
#define FOLLOW_BATCH_DEFAULT 100000
#define IDLE_CHECK_S         0.9   /* how often an idle follower checks the stream */
#define GATHER_LINGER_S      0.001 /* how long a batch waits for more after its first change */
#define BATCH_NAME           "batch"
#define TAIL_WAIT_MS         100 /* a full sync past the stream's last message as of its start */
#define TAIL_S               2.0

typedef struct {
	size_t key, val, len; /* offsets into the batch's strings */
	size_t why;           /* 1 + the offset of why it was refused; 0: not refused here */
	uint64_t seq;
	int op;
	bool bad, superseded, told;
	bool retry; /* refused by the registry's checks: may apply once later changes have */
} entry_t;

typedef struct {
	entry_t *e;
	size_t n, cap;
	char *str; /* keys and values (and the reasons entries were refused) */
	size_t used, str_cap;
	size_t *line; /* line (from 0) -> entry */
	size_t nlines, line_cap;
	jsonl_t *j;          /* the batch parsed (batch_parse) */
	uint64_t last;       /* the highest stream sequence in it */
	uint64_t head;       /* the stream\'s last sequence, as its last message told */
	uint64_t contact_ns; /* when that message came */
	int rc;              /* live: how waiting for its first change ended (-ETIMEDOUT: idle) */
	int prep_rc;         /* live: an error gathering or parsing it (the registry is not safe) */
	char err[JSONL_ERR_MAX];
} batch_t;

/* A change refused for now (an org's delete while it has Machines, a record before its
 * org): kept until it applies or a later change of its key supersedes it. */
typedef struct {
	char *key, *val; /* val: len bytes and a NUL (a put's value; "" for a delete) */
	size_t len;
	uint64_t seq;
	int op;
} pend_t;

typedef struct {
	reg_t *reg;
	const follow_opts_t *o;
	follow_stats_t st;
	kv_conn_t *conn;
	kv_bucket_t *b;
	kv_info_t info;
	batch_t batch;  /* the full sync's */
	uint64_t *skip; /* sequences refused (kept until the transaction holding them commits) */
	size_t nskip, skip_cap;
	uint64_t seq;          /* the position the transaction being written stores */
	uint64_t applied_base; /* st.applied when the full sync began (reg_write may rerun it) */
	follow_seen_fn seen;   /* follow_mirror's caller's look at each message */
	void *seen_arg;
	char state[64]; /* the last state logged */
	pend_t *pend;   /* changes refused for now, kept to be tried again */
	size_t npend, pend_cap;
	bool pend_saved;            /* the pending file exists */
	uint64_t tag_ns;            /* the applied_ns the transaction being written stores */
	uint64_t head;              /* the stream\'s last sequence, as NATS last told */
	uint64_t contact_ns;        /* when NATS last answered (wall clock, ns) */
	uint64_t changes, apply_ns; /* live batches' changes and time in their transactions */
	uint64_t start_ns;
	bool synced;
	/* what /metrics, /health and /ready show: a copy taken after each commit, under mu
	 * (the HTTP thread reads it) */
	pthread_mutex_t mu;
	struct {
		follow_stats_t st;
		uint64_t seq, head, contact_ns, applied_ns, changes, apply_ns;
		size_t kept;
		bool synced;
	} shown;
} follow_t;

static void show(follow_t *fl);

/* Logs a state once per change, as key=value. */
static void set_state(follow_t *fl, const char *state, const char *detail)
{
	if (strcmp(fl->state, state) == 0)
		return;
	snprintf(fl->state, sizeof(fl->state), "%s", state);
	log_info("follow: state=%s bucket=%s%s%s", state, fl->o->bucket, detail ? " " : "",
	         detail ? detail : "");
}

/* Sleeps up to s seconds, returning early when asked to stop. */
static void nap(follow_t *fl, double s)
{
	for (double t = 0; t < s && !*fl->o->stop; t += 0.05)
		nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
}

/* ---- the batch ------------------------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t size)
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

static void batch_reset(batch_t *b)
{
	b->n = b->used = b->nlines = 0;
	b->last = 0;
	b->rc = b->prep_rc = 0;
}

static void batch_free(batch_t *b)
{
	free(b->e), free(b->str), free(b->line);
	jsonl_free(b->j);
	memset(b, 0, sizeof(*b));
}

static const char *key_of(const batch_t *b, const entry_t *e)
{
	return b->str + e->key;
}

static bool skipped(const follow_t *fl, uint64_t seq)
{
	for (size_t i = 0; i < fl->nskip; i++)
		if (fl->skip[i] == seq)
			return true;
	return false;
}

/* Refuses entry e of b, keeping why in the batch for report() (which may run on another
 * thread, later). Its first reason is the one told. */
static void refuse(batch_t *b, entry_t *e, const char *why)
{
	e->bad = true;
	if (e->why)
		return;
	size_t len = strlen(why);
	if (grow((void **)&b->str, &b->str_cap, b->used + len + 1, 1) == 0) {
		memcpy(b->str + b->used, why, len + 1);
		e->why = 1 + b->used;
		b->used += len + 1;
	}
}

/* ---- changes kept for later ---------------------------------------------------------- */

static void pend_drop(follow_t *fl, size_t i)
{
	free(fl->pend[i].key);
	free(fl->pend[i].val);
	fl->pend[i] = fl->pend[--fl->npend];
}

/* A change of key at seq supersedes every kept change of key before it. */
static void pend_supersede(follow_t *fl, const char *key, uint64_t seq)
{
	for (size_t i = fl->npend; i-- > 0;)
		if (fl->pend[i].seq < seq && strcmp(fl->pend[i].key, key) == 0)
			pend_drop(fl, i);
}

/* Keeps a refused change (once: a batch tried again refuses it again). */
static int pend_add(follow_t *fl, const char *key, int op, const char *val, size_t len,
                    uint64_t seq)
{
	pend_supersede(fl, key, seq);
	for (size_t i = 0; i < fl->npend; i++)
		if (strcmp(fl->pend[i].key, key) == 0)
			return 0; /* this one, or a later one, is kept already */
	int rc = grow((void **)&fl->pend, &fl->pend_cap, fl->npend + 1, sizeof(*fl->pend));
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

static void pend_clear(follow_t *fl)
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
static int pend_save(follow_t *fl)
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
static void pend_forget(follow_t *fl)
{
	if (fl->npend == 0 && fl->pend_saved && fl->o->pending_path) {
		unlink(fl->o->pending_path);
		fl->pend_saved = false;
	}
}

/* Reads the file written for the registry's commit f. false: a file for another commit
 * (sync in full). No file: nothing kept. */
static bool pend_load(follow_t *fl, const reg_follow_t *f)
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
		log_warn("follow: %s is not of the registry's last commit: syncing in full", path);
		pend_clear(fl);
	}
	return ok;
}

/* The refusals of b not told yet: each logged and counted once, however often its batch
 * is tried again, and remembered by its sequence (a full sync tried again skips it). */
static void report(follow_t *fl, batch_t *b)
{
	for (size_t i = 0; i < b->n; i++) {
		entry_t *e = &b->e[i];
		if (!e->bad || e->told || skipped(fl, e->seq))
			continue;
		e->told = true;
		if (grow((void **)&fl->skip, &fl->skip_cap, fl->nskip + 1, sizeof(*fl->skip)) == 0)
			fl->skip[fl->nskip++] = e->seq;
		fl->st.skipped++;
		bool kept = e->retry && !e->superseded &&
		            pend_add(fl, key_of(b, e), e->op, b->str + e->val, e->len, e->seq) == 0;
		log_warn("follow: skipped key=%s seq=%" PRIu64 " error=\"%s\"%s", key_of(b, e),
		         e->seq, e->why ? b->str + e->why - 1 : "out of memory",
		         kept ? " kept=yes" : "");
	}
}

/* Copies a message into batch b and checks what jsonl cannot: that the value is one line
 * and is the record its key names. */
static int batch_add(batch_t *b, const kv_msg_t *m)
{
	size_t klen = strlen(m->key);
	int rc;
	if ((rc = grow((void **)&b->e, &b->cap, b->n + 1, sizeof(*b->e))) ||
	    (rc = grow((void **)&b->str, &b->str_cap, b->used + klen + m->len + 2, 1)))
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

/* batch_add for a full sync: a sequence refused before (the sync is being tried again)
 * is skipped, not told again. */
static int sync_add(follow_t *fl, const kv_msg_t *m)
{
	int rc = batch_add(&fl->batch, m);
	/* the registry was cleared: a delete changes nothing, and its record would collide
	 * with the put of the same Machine id under its new key (a Machine that moved org) */
	if (!rc && m->op != KV_PUT)
		fl->batch.e[fl->batch.n - 1].superseded = true;
	if (!rc && skipped(fl, m->seq))
		fl->batch.e[fl->batch.n - 1].bad = fl->batch.e[fl->batch.n - 1].told = true;
	return rc;
}

/* Live batches: the latest change of a key wins; a Machine's delete gives way to a put
 * of the same id (its move to another org) in the same batch. */
static void batch_dedupe(batch_t *b)
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
		if ((l->rc = grow((void **)&b->line, &b->line_cap, b->nlines + 1,
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
		log_error("follow: %s", b->err);
		return rc;
	}
	refuse(b, e, reason(b->err));
	e->retry = true;
	return -EAGAIN;
}

/* Parses batch b into b->j, refusing each line jsonl_parse refuses. */
static int batch_parse(batch_t *b)
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
static int batch_apply(batch_t *b, reg_txn_t *txn)
{
	int rc = jsonl_apply(txn, b->j, false, b->err);
	return rc == -EINVAL ? refuse_named(b, rc) : rc;
}

/* The identity the position is stored with: a regional mirror's is the identity of the
 * hub's stream it mirrors (when the hub answered), since it keeps that stream's
 * sequences: a host that moves to another region's mirror resumes where it was. */
static const char *stream_ident(const follow_t *fl)
{
	return fl->info.origin[0] ? fl->info.origin : fl->info.id;
}

static int put_position(follow_t *fl, reg_txn_t *txn)
{
	reg_follow_t f = {.seq = fl->seq,
	                  .applied_ns = fl->tag_ns,
	                  .head = fl->head > fl->seq ? fl->head : fl->seq,
	                  .contact_ns = fl->contact_ns,
	                  .synced = true};
	snprintf(f.bucket, sizeof(f.bucket), "%s", fl->o->bucket);
	snprintf(f.stream, sizeof(f.stream), "%s", stream_ident(fl));
	return reg_put_follow(txn, &f);
}

/* ---- full sync ------------------------------------------------------------------------ */

static size_t full_chunk(const follow_t *fl)
{
	return fl->o->batch_max && fl->o->batch_max < FULL_CHUNK ? fl->o->batch_max : FULL_CHUNK;
}

/* The org part of a key that belongs to one (machine., peer., flycast.), into org[64];
 * false for org. and region. keys. */
static bool org_of_key(const char *key, char org[64])
{
	const char *a = strchr(key, '.'), *b = a ? strchr(a + 1, '.') : NULL;
	if (!b || strncmp(key, "org.", 4) == 0 || strncmp(key, "region.", 7) == 0 ||
	    (size_t)(b - a - 1) >= 64)
		return false;
	memcpy(org, a + 1, (size_t)(b - a - 1));
	org[b - a - 1] = '\0';
	return true;
}

/* Whether the chunk itself puts key (an org or region record). */
static bool chunk_puts(const batch_t *b, const char *key)
{
	for (size_t k = 0; k < b->n; k++)
		if (b->e[k].op == KV_PUT && !b->e[k].bad && strcmp(key_of(b, &b->e[k]), key) == 0)
			return true;
	return false;
}

/* Full sync: a record whose org or region is neither in the registry yet nor in its own
 * chunk (that org's or region's latest value comes later in the stream) goes to the
 * spill file, read again once every org and region is in. Bounded memory however the
 * stream is ordered. */
static int spill_early(follow_t *fl, reg_txn_t *txn, FILE *spill)
{
	batch_t *b = &fl->batch;
	for (size_t i = 0; i < b->n; i++) {
		entry_t *e = &b->e[i];
		char org[64], region[64], key[80];
		uint32_t net;
		reg_region_t r;
		if (e->bad || e->superseded || e->op != KV_PUT || !org_of_key(key_of(b, e), org))
			continue;
		bool early = false;
		if (reg_org_net(txn, org, strlen(org), &net) != 0) {
			snprintf(key, sizeof(key), "org.%s", org);
			early = !chunk_puts(b, key);
		}
		if (!early &&
		    kvkey_region_of(b->str + e->val, e->len, region, sizeof(region)) == 0 &&
		    reg_get_region(txn, region, strlen(region), &r) != 0) {
			snprintf(key, sizeof(key), "region.%s", region);
			early = !chunk_puts(b, key);
		}
		if (!early)
			continue;
		if (fprintf(spill, "%" PRIu64 " %s %.*s\n", e->seq, key_of(b, e), (int)e->len,
		            b->str + e->val) < 0)
			return -EIO;
		e->superseded = true; /* applied from the spill file instead */
	}
	return 0;
}

static int apply_chunk(follow_t *fl, reg_txn_t *txn, FILE *spill)
{
	batch_t *b = &fl->batch;
	int rc = 0;
	batch_dedupe(b);
	if ((!spill || !(rc = spill_early(fl, txn, spill))) && !(rc = batch_parse(b)))
		rc = batch_apply(b, txn);
	report(fl, b); /* before the batch goes: a sync tried again must skip them */
	if (rc)
		return rc;
	fl->st.applied += jsonl_count(b->j);
	batch_reset(b);
	return 0;
}

/* The spilled records, now that every org is in. */
static int apply_spill(follow_t *fl, reg_txn_t *txn, FILE *spill)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;
	rewind(spill);
	batch_reset(&fl->batch);
	while (!rc && (len = getline(&line, &cap, spill)) > 0) {
		char *key = strchr(line, ' '), *val = key ? strchr(key + 1, ' ') : NULL;
		if (!val)
			continue;
		*key++ = '\0', *val++ = '\0';
		kv_msg_t m = {.key = key,
		              .value = val,
		              .len = (size_t)(line + len - val - 1),
		              .op = KV_PUT,
		              .seq = strtoull(line, NULL, 10)};
		rc = sync_add(fl, &m);
		if (!rc && fl->batch.n == full_chunk(fl))
			rc = apply_chunk(fl, txn, NULL);
	}
	free(line);
	if (!rc && fl->batch.n)
		rc = apply_chunk(fl, txn, NULL);
	return rc;
}

/* Reads every key's latest value into txn, in chunks. *last: the highest sequence seen. */
static int sync_keys(follow_t *fl, reg_txn_t *txn, uint64_t *last)
{
	kv_sub_t *sub = NULL;
	kv_msg_t m;
	if (fl->info.msgs == 0)
		return 0;
	FILE *spill = tmpfile();
	if (!spill)
		return -errno;
	/* every message the stream holds, in order: with history 1 that is each key's latest
	 * value or delete marker (a consumer of "the latest per key" would make the server
	 * index every key first: 25 s before the first message at a million keys), pulled a
	 * batch at a time so that memory does not depend on how fast we apply */
	int rc = kv_sub_open_pull(fl->b, 1, &sub);
	batch_reset(&fl->batch);
	/* The end: the server's count of messages pending reads 0, or, once past the
	 * stream's last message as of the start (or a later one: it may have been
	 * superseded since), nothing more comes at once (TAIL_WAIT_MS) or TAIL_S have
	 * passed. The count alone is not enough: with writes going on it may never read 0
	 * (nats-server 2.9 counts a message superseded ahead of the consumer until it
	 * passes), and the next fetch then waited for a full batch, out to its timeout,
	 * and the sync started again: for minutes, while the hub took one write a second.
	 * Reading on past the start's last message takes in the writes made meanwhile
	 * that superseded a key's earlier value (otherwise the key would be missing until
	 * the first live batch). */
	double tail = 0;
	for (bool done = false; !rc && !done;) {
		bool past = *last >= fl->info.last;
		if (past && tail == 0)
			tail = clock_mono_s() + TAIL_S;
		rc = kv_sub_next(sub, past ? TAIL_WAIT_MS : 30000, &m);
		if (rc == -ETIMEDOUT && past) { /* everything stored now is read */
			rc = fl->batch.n ? apply_chunk(fl, txn, spill) : 0;
			break;
		}
		if (rc || (rc = sync_add(fl, &m)))
			break;
		if (fl->seen)
			fl->seen(fl->seen_arg, &m);
		if (m.seq > *last)
			*last = m.seq;
		done = m.pending == 0 || (past && clock_mono_s() > tail);
		if (done || fl->batch.n == full_chunk(fl))
			rc = apply_chunk(fl, txn, spill);
	}
	kv_sub_close(sub);
	if (!rc)
		rc = apply_spill(fl, txn, spill);
	fclose(spill);
	return rc;
}

static int full_fn(reg_txn_t *txn, void *arg)
{
	follow_t *fl = arg;
	uint64_t last = 0;
	fl->st.applied = fl->applied_base;
	int rc = reg_clear(txn);
	if (!rc)
		rc = sync_keys(fl, txn, &last);
	if (rc)
		return rc;
	fl->seq = last > fl->info.last ? last : fl->info.last;
	fl->head = fl->seq;
	fl->contact_ns = clock_wall_ns();
	if ((rc = put_position(fl, txn)))
		return rc;
	return pend_save(fl);
}

static int full_sync(follow_t *fl)
{
	double t0 = clock_mono_s();
	int rc;
	char detail[96];
	snprintf(detail, sizeof(detail), "stream=%s last_seq=%" PRIu64, fl->info.id, fl->info.last);
	set_state(fl, "full-sync", detail);
	fl->applied_base = fl->st.applied;
	pend_clear(fl); /* what was kept is in the bucket's content, or superseded */
	fl->pend_saved = fl->o->pending_path != NULL; /* an old file goes after the commit */
	fl->tag_ns = clock_wall_ns();
	do
		rc = reg_write(fl->reg, full_fn, fl);
	while (rc == -EAGAIN);
	if (rc)
		return rc;
	pend_forget(fl);
	fl->nskip = 0;
	fl->st.full_syncs++;
	fl->synced = true;
	show(fl);
	log_info("follow: full-sync=done bucket=%s seq=%" PRIu64 " records=%" PRIu64
	         " skipped=%" PRIu64 " kept=%zu seconds=%.2f",
	         fl->o->bucket, fl->seq, fl->st.applied - fl->applied_base, fl->st.skipped,
	         fl->npend, clock_mono_s() - t0);
	return 0;
}

/* ---- live ------------------------------------------------------------------------------- */

typedef struct {
	follow_t *fl;
	batch_t *b;
} live_arg_t;

static int live_fn(reg_txn_t *txn, void *arg)
{
	live_arg_t *a = arg;
	int rc = batch_apply(a->b, txn);
	if (rc || (rc = put_position(a->fl, txn)))
		return rc;
	/* every change of the batch supersedes what was kept of its key before it (the
	 * batch's own refusals were kept by report) */
	for (size_t i = 0; i < a->b->n; i++)
		pend_supersede(a->fl, key_of(a->b, &a->b->e[i]), a->b->e[i].seq);
	return pend_save(a->fl);
}

static int retry_fn(reg_txn_t *txn, void *arg)
{
	live_arg_t *a = arg;
	int rc = batch_apply(a->b, txn);
	if (rc || (rc = put_position(a->fl, txn)))
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
static int pend_retry(follow_t *fl)
{
	batch_t b = {0};
	live_arg_t arg = {fl, &b};
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
				log_info("follow: applied key=%s seq=%" PRIu64 " kept=%zu",
				         key_of(&b, &b.e[i]), b.e[i].seq, fl->npend);
	}
	batch_free(&b);
	return rc;
}

/* Writes the gathered and parsed batch b in one transaction with its position, then
 * tries the changes kept from earlier batches again. */
static int live_batch(follow_t *fl, batch_t *b)
{
	live_arg_t arg = {fl, b};
	int rc;
	fl->seq = b->last;
	fl->tag_ns = clock_wall_ns();
	if (b->head > fl->head)
		fl->head = b->head;
	fl->contact_ns = b->contact_ns;
	uint64_t t0 = clock_wall_ns();
	for (;;) {
		report(fl, b);
		rc = reg_write(fl->reg, live_fn, &arg);
		if (rc != -EAGAIN || (rc = batch_parse(b)))
			break;
	}
	fl->apply_ns += clock_wall_ns() - t0;
	fl->changes += b->n;
	report(fl, b);
	if (rc)
		return rc;
	pend_forget(fl);
	fl->nskip = 0;
	fl->st.batches++;
	fl->st.applied += jsonl_count(b->j);
	log_debug("follow: batch seq=%" PRIu64 " changes=%zu applied=%zu kept=%zu", b->last, b->n,
	          jsonl_count(b->j), fl->npend);
	if (fl->npend && jsonl_count(b->j))
		rc = pend_retry(fl);
	show(fl);
	return rc;
}

/*
 * The gatherer: a thread one batch ahead of the writer. While the writer applies and
 * commits batch i, it gathers batch 1 - i from the subscription (every change already
 * received, at most cap) and parses it. It touches nothing of the follower but the
 * subscription and its own batch; the writer tells and counts what it refused.
 */
typedef struct {
	kv_sub_t *sub;
	size_t cap;
	uint64_t seq; /* the last sequence gathered (the gatherer's own) */
	volatile sig_atomic_t *stop;
	batch_t b[2];
	int want, done; /* the batch to gather next, the one gathered (-1: none) */
	bool quit;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
} ahead_t;

static void gather(ahead_t *a, batch_t *b)
{
	kv_msg_t m;
	batch_reset(b);
	b->rc = kv_sub_next(a->sub, 500, &m);
	if (b->rc == 0 && m.seq <= a->seq)
		b->rc = -ETIMEDOUT; /* a redelivery after the consumer was re-created */
	if (b->rc)
		return;
	a->seq = m.seq;
	b->head = m.seq + m.pending;
	int rc = batch_add(b, &m);
	/* every change already received, and for GATHER_LINGER_S after the first one also
	 * what arrives meanwhile: a burst that NATS's thread is still handing over (changes
	 * written together, an org and its Machines) is one batch, not cut after its first
	 * change because this thread woke before the rest was queued */
	double first = clock_mono_s();
	while (!rc && b->n < a->cap && !*a->stop &&
	       (kv_sub_queued(a->sub) > 0 || clock_mono_s() - first < GATHER_LINGER_S) &&
	       kv_sub_next(a->sub, 1, &m) == 0) {
		if (m.seq <= a->seq)
			continue;
		a->seq = m.seq;
		b->head = m.seq + m.pending;
		rc = batch_add(b, &m);
	}
	b->contact_ns = clock_wall_ns();
	if (!rc) {
		batch_dedupe(b);
		rc = batch_parse(b);
	}
	b->prep_rc = rc;
}

static void *ahead_main(void *arg)
{
	ahead_t *a = arg;
	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (a->want < 0 && !a->quit)
			pthread_cond_wait(&a->cv, &a->mu);
		if (a->quit)
			break;
		int i = a->want;
		a->want = -1;
		pthread_mutex_unlock(&a->mu);
		gather(a, &a->b[i]);
		pthread_mutex_lock(&a->mu);
		a->done = i;
		pthread_cond_broadcast(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

static int ahead_start(ahead_t *a, kv_sub_t *sub, size_t cap, uint64_t seq,
                       volatile sig_atomic_t *stop)
{
	*a = (ahead_t){.sub = sub, .cap = cap, .seq = seq, .stop = stop, .want = 0, .done = -1};
	int rc = pthread_mutex_init(&a->mu, NULL);
	if (rc)
		return -rc;
	if ((rc = pthread_cond_init(&a->cv, NULL))) {
		pthread_mutex_destroy(&a->mu);
		return -rc;
	}
	if ((rc = pthread_create(&a->th, NULL, ahead_main, a))) {
		pthread_cond_destroy(&a->cv);
		pthread_mutex_destroy(&a->mu);
		return -rc;
	}
	return 0;
}

/* The batch gathered next. The writer owns it until its next call, which hands it back
 * to be gathered into again; the gatherer starts on the other batch at once. */
static batch_t *ahead_take(ahead_t *a)
{
	pthread_mutex_lock(&a->mu);
	while (a->done < 0)
		pthread_cond_wait(&a->cv, &a->mu);
	int i = a->done;
	a->done = -1;
	a->want = 1 - i;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	return &a->b[i];
}

/* Stops the gatherer (after the message it waits for, at most half a second). */
static void ahead_stop(ahead_t *a)
{
	pthread_mutex_lock(&a->mu);
	a->quit = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	pthread_join(a->th, NULL);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	batch_free(&a->b[0]);
	batch_free(&a->b[1]);
}

enum { LIVE_STOP, LIVE_RESYNC, LIVE_RETRY };

/* A transaction of the position alone: the head and the last contact, once a second
 * while the bucket is quiet (applied_ns unchanged: it still tags the kept changes). */
static int beat_fn(reg_txn_t *txn, void *arg)
{
	return put_position(arg, txn);
}

/* While idle: whether the stream is still the one followed and the consumer keeps up
 * (-1: go on; LIVE_RESYNC or LIVE_RETRY with *err otherwise). */
static int idle_check(follow_t *fl, uint64_t seq, int *lagging, int *err)
{
	/* no request while the connection is down: it would wait out its timeout (5 s) and
	 * keep a SIGTERM waiting that long; the consumer resumes once NATS is back */
	if (!kv_connected(fl->conn))
		return -1;
	kv_info_t now;
	int rc = kv_info(fl->b, &now);
	if (rc) {
		*err = rc;
		return rc == -ENOENT ? LIVE_RESYNC : LIVE_RETRY;
	}
	if (strcmp(now.id, fl->info.id) != 0 || now.last < seq)
		return LIVE_RESYNC;
	/* NATS answered: the registry says so (and what the head is), so that a quiet bucket
	 * and a follower cut off or stuck look different to whoever reads it */
	fl->head = now.last;
	fl->contact_ns = clock_wall_ns();
	if ((rc = reg_write(fl->reg, beat_fn, fl))) {
		*err = rc;
		return LIVE_STOP;
	}
	show(fl);
	/* idle while the stream is ahead twice in a row: the consumer is stuck (a server
	 * lost it); take a new one from where we are */
	*lagging = now.last > seq ? *lagging + 1 : 0;
	return *lagging >= 2 ? LIVE_RETRY : -1;
}

/* Applies changes after position seq until asked to stop (LIVE_STOP), until the stream
 * is another one or lost what we need (LIVE_RESYNC), or until NATS fails (LIVE_RETRY). */
static int live(follow_t *fl, uint64_t seq, int *err)
{
	kv_sub_t *sub = NULL;
	ahead_t a;
	size_t cap = fl->o->batch_max ? fl->o->batch_max : FOLLOW_BATCH_DEFAULT;
	double checked = clock_mono_s();
	int rc = kv_sub_open(fl->b, NULL, seq + 1, &sub), lagging = 0, how = LIVE_STOP;
	*err = 0;
	if (rc) {
		*err = rc;
		return LIVE_RETRY;
	}
	if ((rc = ahead_start(&a, sub, cap, seq, fl->o->stop))) {
		kv_sub_close(sub);
		*err = rc;
		return LIVE_STOP;
	}
	char detail[64];
	snprintf(detail, sizeof(detail), "seq=%" PRIu64, seq);
	set_state(fl, "live", detail);
	while (!*fl->o->stop) {
		batch_t *b = ahead_take(&a);
		if (b->rc == -ETIMEDOUT) {
			if (clock_mono_s() - checked < IDLE_CHECK_S)
				continue;
			checked = clock_mono_s();
			if ((how = idle_check(fl, seq, &lagging, err)) >= 0)
				break;
			how = LIVE_STOP;
			set_state(fl, "live", detail);
			continue;
		}
		if (b->rc) {
			*err = b->rc;
			how = LIVE_RETRY;
			break;
		}
		lagging = 0;
		if ((rc = b->prep_rc) || (rc = live_batch(fl, b))) {
			*err = rc;
			break;
		}
		seq = b->last;
		snprintf(detail, sizeof(detail), "seq=%" PRIu64, seq);
	}
	ahead_stop(&a);
	kv_sub_close(sub);
	return how;
}

/* ---- what the follower shows (--metrics) ------------------------------------------------ */

/* After a commit: the numbers the HTTP thread may read. */
static void show(follow_t *fl)
{
	pthread_mutex_lock(&fl->mu);
	fl->shown.st = fl->st;
	fl->shown.seq = fl->seq;
	fl->shown.head = fl->head > fl->seq ? fl->head : fl->seq;
	fl->shown.contact_ns = fl->contact_ns;
	fl->shown.applied_ns = fl->tag_ns;
	fl->shown.changes = fl->changes;
	fl->shown.apply_ns = fl->apply_ns;
	fl->shown.kept = fl->npend;
	fl->shown.synced = fl->synced;
	pthread_mutex_unlock(&fl->mu);
}

static int src_ready(void *arg, char *msg, size_t cap)
{
	follow_t *fl = arg;
	pthread_mutex_lock(&fl->mu);
	bool synced = fl->shown.synced;
	pthread_mutex_unlock(&fl->mu);
	if (synced)
		snprintf(msg, cap, "ready\n");
	else
		snprintf(msg, cap, "waiting for the first full sync of bucket %s\n", fl->o->bucket);
	return synced ? 200 : 503;
}

/* 503 while cut off from NATS for longer than --stale-after, or while the head is ahead
 * and nothing has been applied for that long (stuck). */
static int src_health(void *arg, char *msg, size_t cap)
{
	follow_t *fl = arg;
	pthread_mutex_lock(&fl->mu);
	uint64_t contact = fl->shown.contact_ns, applied = fl->shown.applied_ns;
	uint64_t seq = fl->shown.seq, head = fl->shown.head;
	pthread_mutex_unlock(&fl->mu);
	double now = (double)clock_wall_ns() / 1e9;
	double stale = fl->o->stale_after > 0 ? fl->o->stale_after : 10;
	double since = now - (double)(contact ? contact : fl->start_ns) / 1e9;
	if (since > stale) {
		snprintf(msg, cap, "no contact with NATS for %.1f s (%s; --stale-after %.0f)\n",
		         since, kv_connected(fl->conn) ? "connected" : "disconnected", stale);
		return 503;
	}
	if (head > seq && applied && now - (double)applied / 1e9 > stale) {
		snprintf(msg, cap, "stuck: %llu changes behind, nothing applied for %.1f s\n",
		         (unsigned long long)(head - seq), now - (double)applied / 1e9);
		return 503;
	}
	snprintf(msg, cap, "ok: seq %llu, head %llu, last contact %.1f s ago\n",
	         (unsigned long long)seq, (unsigned long long)head, since);
	return 200;
}

static int src_render(void *arg, met_buf_t *b)
{
	follow_t *fl = arg;
	pthread_mutex_lock(&fl->mu);
	follow_stats_t st = fl->shown.st;
	uint64_t seq = fl->shown.seq, head = fl->shown.head, contact = fl->shown.contact_ns;
	uint64_t changes = fl->shown.changes, apply_ns = fl->shown.apply_ns;
	size_t kept = fl->shown.kept;
	bool synced = fl->shown.synced;
	pthread_mutex_unlock(&fl->mu);
	met_put_gauge(b, "internalctl_follow_nats_connected", "1 while connected to NATS.",
	              kv_connected(fl->conn) ? 1 : 0);
	met_put_counter(b, "internalctl_follow_nats_reconnects_total",
	                "Connections to NATS lost and re-established.", kv_reconnects(fl->conn));
	met_put_gauge(b, "internalctl_follow_synced", "1 once the first full sync has committed.",
	              synced ? 1 : 0);
	met_put_gauge(b, "internalctl_follow_sequence", "The last stream sequence applied.",
	              (double)seq);
	met_put_gauge(b, "internalctl_follow_head_sequence",
	              "The bucket's last stream sequence as NATS last told.", (double)head);
	met_put_gauge(b, "internalctl_follow_last_contact_timestamp_seconds",
	              "When NATS last answered (Unix time; 0: never).", (double)contact / 1e9);
	met_put_counter(b, "internalctl_follow_changes_applied_total",
	                "Changes committed (records and deletes, after deduplication).",
	                st.applied);
	met_put_counter(b, "internalctl_follow_values_refused_total",
	                "Values refused (each logged once as skipped).", st.skipped);
	met_put_gauge(b, "internalctl_follow_kept_changes",
	              "Changes refused for now, kept and tried again after each batch.",
	              (double)kept);
	met_put_counter(b, "internalctl_follow_batches_total", "Live batches committed.",
	                st.batches);
	met_put_counter(b, "internalctl_follow_batch_changes_total",
	                "Changes in those batches (over batches_total: the mean batch size).",
	                changes);
	met_put_counter(b, "internalctl_follow_full_syncs_total", "Full syncs committed.",
	                st.full_syncs);
	met_put_gauge(b, "internalctl_follow_apply_seconds_total",
	              "Time in live batches' transactions (over batches_total: the mean apply "
	              "time).",
	              (double)apply_ns / 1e9);
	return b->failed ? -ENOMEM : 0;
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* Whether the registry's position can be resumed from in the stream now known. */
static bool resumable(follow_t *fl, uint64_t *seq)
{
	reg_txn_t *txn;
	reg_follow_t f;
	if (reg_txn_begin(fl->reg, false, &txn))
		return false;
	int rc = reg_get_follow(txn, &f);
	reg_txn_abort(txn);
	if (rc)
		return false;
	*seq = f.seq;
	fl->seq = f.seq;
	fl->tag_ns = f.applied_ns;
	fl->head = f.head;
	/* history 1: a stream drops older messages of a key; one that dropped messages past
	 * our position may have dropped a delete marker too, so only a stream that still
	 * holds everything after seq is resumed */
	bool same = strcmp(f.stream, fl->info.id) == 0 ||
	            (fl->info.origin[0] && strcmp(f.stream, fl->info.origin) == 0);
	return strcmp(f.bucket, fl->o->bucket) == 0 && same && f.seq <= fl->info.last &&
	       (fl->info.first == 0 || fl->info.first <= f.seq + 1) && pend_load(fl, &f);
}

/* Says why NATS cannot be followed now (state waiting or bucket-missing), then waits the
 * back-off, doubled for the next time (up to 5 s). */
static void retry_later(follow_t *fl, int rc, double *backoff)
{
	char detail[160];
	snprintf(detail, sizeof(detail), "error=\"%s\"", kv_strerror(rc));
	set_state(fl, rc == -ENOENT ? "bucket-missing" : "waiting", detail);
	nap(fl, *backoff);
	*backoff = *backoff < 2.5 ? *backoff * 2 : 5;
}

/* Before a full sync: waits a random part of the spread window (follow_opts_t), the
 * registry answering as it is meanwhile. False when asked to stop while waiting. */
static bool spread_wait(follow_t *fl)
{
	double window = fl->o->sync_spread_s;
	if (window == 0) {
		window = (double)fl->info.msgs / FOLLOW_SPREAD_RATE;
		if (window > FOLLOW_SPREAD_MAX_S)
			window = FOLLOW_SPREAD_MAX_S;
	}
	if (window < 0.1) /* a small stream: not worth a wait */
		return true;
	unsigned seed = (unsigned)(clock_wall_ns() ^ ((uint64_t)getpid() * 2654435761u));
	double delay = window * ((double)rand_r(&seed) / ((double)RAND_MAX + 1));
	log_info("follow: full-sync=delayed bucket=%s seconds=%.2f window=%.2f", fl->o->bucket,
	         delay, window);
	nap(fl, delay);
	return !*fl->o->stop;
}

int follow_mirror(reg_t *reg, kv_bucket_t *b, const char *bucket, follow_seen_fn seen,
                  void *seen_arg, follow_stats_t *stats)
{
	static volatile sig_atomic_t never;
	follow_opts_t o = {.bucket = bucket, .stop = &never};
	follow_t fl = {.reg = reg,
	               .o = &o,
	               .b = b,
	               .state = "full-sync",
	               .seen = seen,
	               .seen_arg = seen_arg};
	pthread_mutex_init(&fl.mu, NULL);
	int rc = kv_info(b, &fl.info);
	if (!rc)
		rc = full_sync(&fl);
	if (stats)
		*stats = fl.st;
	batch_free(&fl.batch);
	free(fl.skip);
	pthread_mutex_destroy(&fl.mu);
	pend_clear(&fl);
	free(fl.pend);
	return rc;
}

/* A registry the follower starts on says so before anything is synced into it, so that
 * internald knows not to answer from it yet (no position: nothing synced). */
static int mark_fn(reg_txn_t *txn, void *arg)
{
	const follow_t *fl = arg;
	reg_follow_t f = {.synced = false};
	if (reg_get_follow(txn, &f) == 0)
		return 0;
	snprintf(f.bucket, sizeof(f.bucket), "%s", fl->o->bucket);
	return reg_put_follow(txn, &f);
}

int follow_run(reg_t *reg, const follow_opts_t *o, follow_stats_t *stats)
{
	follow_t fl = {.reg = reg, .o = o, .start_ns = clock_wall_ns()};
	int rc = reg_write(reg, mark_fn, &fl);
	if (rc) {
		log_error("follow: cannot write the registry: %s", reg_strerror(rc));
		return rc;
	}
	reg_txn_t *txn;
	reg_follow_t f;
	if (reg_txn_begin(reg, false, &txn) ==
	    0) { /* what a restart shows before its first commit */
		if (reg_get_follow(txn, &f) == 0 && f.synced) {
			fl.synced = true;
			fl.seq = f.seq, fl.head = f.head, fl.tag_ns = f.applied_ns;
		}
		reg_txn_abort(txn);
	}
	rc = kv_connect_opts(&fl.conn, o->nats, true);
	if (rc) {
		log_error("follow: cannot start a NATS connection: %s", kv_strerror(rc));
		return rc;
	}
	if (o->js_domain && (rc = kv_set_domain(fl.conn, o->js_domain))) {
		log_error("follow: --js-domain '%s': not a JetStream domain name", o->js_domain);
		kv_close(fl.conn);
		return rc;
	}
	pthread_mutex_init(&fl.mu, NULL);
	show(&fl);
	const met_source_t src = {
	        .arg = &fl, .ready = src_ready, .health = src_health, .render = src_render};
	met_http_attach(o->http, &src);
	double backoff = 0.1;
	bool spread = false; /* the delay before this full sync was waited already */
	rc = 0;
	while (!*o->stop) {
		if (!kv_connected(fl.conn)) { /* as in idle_check: no request to wait out */
			retry_later(&fl, -ENOTCONN, &backoff);
			continue;
		}
		if (!fl.b && (rc = kv_bucket_open(fl.conn, o->bucket, 0, 0, &fl.b))) {
			retry_later(&fl, rc, &backoff);
			continue;
		}
		if ((rc = kv_info(fl.b, &fl.info))) {
			if (rc == -ENOENT)
				kv_bucket_close(fl.b), fl.b = NULL;
			retry_later(&fl, rc, &backoff);
			continue;
		}
		uint64_t seq = 0;
		if (!resumable(&fl, &seq)) {
			if (!spread) {
				spread = true; /* then look at the stream again: it moved on */
				if (!spread_wait(&fl))
					break;
				continue;
			}
			spread = false;
			rc = full_sync(&fl);
			if (rc == -ENOTCONN || rc == -ETIMEDOUT || rc == -EIO || rc == -ENOENT) {
				retry_later(&fl, rc, &backoff);
				continue;
			}
			if (rc) {
				log_error("follow: full sync failed: %s", reg_strerror(rc));
				break;
			}
			seq = fl.seq;
		}
		int err = 0;
		int how = live(&fl, seq, &err);
		if (how == LIVE_STOP) {
			rc = err;
			if (rc)
				log_error("follow: cannot write the registry: %s",
				          reg_strerror(rc));
			break;
		}
		if (how == LIVE_RESYNC) {
			/* look the bucket up again: it may have been deleted and recreated */
			kv_bucket_close(fl.b);
			fl.b = NULL;
		}
		if (err) {
			retry_later(&fl, err, &backoff);
		} else {
			backoff = 0.1;
		}
	}
	if (!rc)
		log_info("follow: state=stopped bucket=%s applied=%" PRIu64 " skipped=%" PRIu64
		         " batches=%" PRIu64,
		         o->bucket, fl.st.applied, fl.st.skipped, fl.st.batches);
	if (stats)
		*stats = fl.st;
	batch_free(&fl.batch);
	free(fl.skip);
	met_http_stop(o->http); /* joins its thread: no request reads fl after this */
	pthread_mutex_destroy(&fl.mu);
	pend_clear(&fl);
	free(fl.pend);
	kv_bucket_close(fl.b);
	kv_close(fl.conn);
	return rc;
}
