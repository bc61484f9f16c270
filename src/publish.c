/*
 * publish.c — internalctl publish: validate a JSON Lines file against the bucket's
 * content, then write it into the bucket. Validation reuses import's own code: the
 * bucket is mirrored into a scratch registry (follow_mirror) and the file applied to it
 * in a transaction that is thrown away. With --db DIR (a registry a follower keeps at the
 * bucket's head) the file is applied to DIR instead, in a write transaction that is
 * thrown away too, and the bucket is read one key at a time (kv_get) for the keys the
 * file touches: a publish costs what it publishes, not what the bucket holds. Nothing is
 * written to the bucket before the whole file has passed. This file must never include
 * a NATS header (kv.h only).
 */
#include "publish.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "follow.h"
#include "jsonl.h"
#include "kv.h"
#include "kvkey.h"
#include "registry.h"

typedef struct {
	char *key;    /* NULL: a delete of something the bucket does not hold */
	char *oldkey; /* a Machine's put: its key in the bucket when under another org */
	size_t off;   /* the line in the input */
	size_t len;
	int kind;
	bool del;
	kvkey_addr_t addr; /* a Machine's or peer's put: the address it takes */
} line_t;

typedef struct {
	const jsonl_t *j;
	bool replace;
	char *err;
} check_t;

#define CHECKED             1
#define PUBLISH_ATTEMPTS    5    /* check_fn's "valid, now throw the transaction away" */
#define PUBLISH_RETRY_MIN_S 30.0 /* the least time attempts go on after the first failure */

static int check_fn(reg_txn_t *txn, void *arg)
{
	check_t *c = arg;
	int rc = jsonl_apply(txn, c->j, c->replace, c->err);
	return rc ? rc : CHECKED;
}

static int read_all(FILE *f, char **out, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap)
			break;
		char *nb = realloc(buf, cap * 2);
		if (!nb)
			free(buf);
		buf = nb, cap *= 2;
	}
	if (!buf)
		return -ENOMEM;
	if (ferror(f)) {
		free(buf);
		return -EIO;
	}
	*out = buf, *len = n;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts keys[0..n) and drops repeats; returns how many are left. */
static size_t sort_unique(char **keys, size_t n)
{
	size_t m = 0;
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (size_t i = 0; i < n; i++)
		if (m == 0 || strcmp(keys[m - 1], keys[i]) != 0)
			keys[m++] = keys[i];
	return m;
}

/*
 * What the bucket holds, as the mirror read it: each key with a digest of its latest
 * value (128 bits: two hashes), or marked deleted. An open-addressing table that owns
 * its keys. Lets publish put only what differs, delete only what is there, and list the
 * keys --replace deletes, without reading the stream a second time.
 */
typedef struct {
	char *key;
	uint64_t h1, h2;
	bool held; /* a value, not a delete marker */
} held_t;

typedef struct {
	held_t *slot;
	size_t cap, n;
	int rc; /* -ENOMEM once an insert failed: then every record is put, as before */
} bucket_map_t;

static uint64_t hash_of(const char *s, size_t len, uint64_t h, uint64_t mul)
{
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * mul;
	return h ^ (h >> 29);
}
static void digest(const char *v, size_t len, uint64_t *h1, uint64_t *h2)
{
	*h1 = hash_of(v, len, 1469598103934665603ULL, 1099511628211ULL);
	*h2 = hash_of(v, len, 0x9e3779b97f4a7c15ULL, 0xff51afd7ed558ccdULL) + len;
}

static held_t *map_find(const bucket_map_t *m, const char *key)
{
	if (!m->cap)
		return NULL;
	size_t i = (size_t)hash_of(key, strlen(key), 1469598103934665603ULL, 1099511628211ULL) &
	           (m->cap - 1);
	while (m->slot[i].key && strcmp(m->slot[i].key, key) != 0)
		i = (i + 1) & (m->cap - 1);
	return &m->slot[i];
}

static int map_grow(bucket_map_t *m)
{
	bucket_map_t g = {.cap = m->cap ? 2 * m->cap : 1024};
	if (!(g.slot = calloc(g.cap, sizeof(*g.slot))))
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slot[i].key)
			*map_find(&g, m->slot[i].key) = m->slot[i];
	g.n = m->n;
	free(m->slot);
	*m = g;
	return 0;
}

/* follow_mirror's look at each message: the latest one of a key wins. */
static void map_seen(void *arg, const kv_msg_t *msg)
{
	bucket_map_t *m = arg;
	if (m->rc || (2 * (m->n + 1) > m->cap && (m->rc = map_grow(m))))
		return;
	held_t *h = map_find(m, msg->key);
	if (!h->key) {
		if (!(h->key = strdup(msg->key))) {
			m->rc = -ENOMEM;
			return;
		}
		m->n++;
	}
	h->held = msg->op == KV_PUT;
	digest(msg->value, msg->len, &h->h1, &h->h2);
}

static void map_free(bucket_map_t *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slot[i].key);
	free(m->slot);
}

/* Whether the bucket holds exactly this value under key (false when unsure). */
static bool unchanged(const bucket_map_t *m, const char *key, const char *v, size_t len)
{
	const held_t *h = m->rc ? NULL : map_find(m, key);
	uint64_t h1, h2;
	if (!h || !h->key || !h->held)
		return false;
	digest(v, len, &h1, &h2);
	return h1 == h->h1 && h2 == h->h2;
}

/* Whether the bucket holds a value under key (true when unsure). */
static bool held(const bucket_map_t *m, const char *key)
{
	const held_t *h = m->rc ? NULL : map_find(m, key);
	return !h || (h->key && h->held);
}

/* Every key the bucket holds a value under, sorted (pointers into m); for --replace. */
static int bucket_keys(const bucket_map_t *m, char ***out, size_t *n)
{
	char **keys = malloc((m->n + 1) * sizeof(*keys));
	*n = 0;
	if (m->rc || !keys) {
		free(keys);
		return m->rc ? m->rc : -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++)
		if (m->slot[i].key && m->slot[i].held)
			keys[(*n)++] = m->slot[i].key;
	qsort(keys, *n, sizeof(*keys), cmp_str);
	*out = keys;
	return 0;
}

static void remove_scratch(char *dir)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

/* The key of every line, a Machine's delete by id found in the bucket's content; and of a
 * Machine's put, the key the bucket holds it under when that is another org's (a move:
 * the old key is deleted with the deletes, so that no follower ever sees two copies). */
static int line_keys(reg_t *scratch, const char *name, char *buf, size_t len, line_t **out,
                     size_t *nout)
{
	reg_txn_t *txn;
	line_t *lines = NULL;
	size_t n = 0, cap = 0, lineno = 0;
	int rc = reg_txn_begin(scratch, false, &txn);
	if (rc)
		return rc;
	for (size_t off = 0; off < len && !rc;) {
		char *nl = memchr(buf + off, '\n', len - off);
		size_t l = nl ? (size_t)(nl - (buf + off)) : len - off;
		size_t start = off;
		off += l + 1;
		lineno++;
		while (l && (buf[start + l - 1] == '\r' || buf[start + l - 1] == ' '))
			l--;
		if (strspn(buf + start, " \t") >= l)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			line_t *nl2 = realloc(lines, cap * sizeof(*nl2));
			if (!nl2) {
				rc = -ENOMEM;
				break;
			}
			lines = nl2;
		}
		line_t *ln = &lines[n++];
		char key[KVKEY_MAX], id[64], err[256];
		*ln = (line_t){.off = start, .len = l};
		ln->kind = kvkey_of_record_addr(buf + start, l, key, sizeof(key), &ln->del, id,
		                                sizeof(id), &ln->addr, err, sizeof(err));
		if (ln->kind < 0) {
			fprintf(stderr, "internalctl: %s:%zu: %s\n", name, lineno, err);
			rc = -EINVAL;
			break;
		}
		if (!key[0]) { /* a Machine's delete: its key is wherever the bucket has it */
			reg_machine_buf_t mb;
			char org[REG_LABEL_MAX + 1];
			if (reg_get_machine(txn, id, &mb) ||
			    reg_org_slug(txn, mb.m.net, org, sizeof(org)) ||
			    kvkey_machine(org, id, key, sizeof(key)))
				continue; /* not in the bucket: nothing to delete */
		}
		if (!(ln->key = strdup(key)))
			rc = -ENOMEM;
		if (!rc && ln->kind == KVKEY_MACHINE && !ln->del) {
			const char *mid = strrchr(key, '.') + 1;
			reg_machine_buf_t mb;
			char org[REG_LABEL_MAX + 1], old[KVKEY_MAX];
			if (!reg_get_machine(txn, mid, &mb) &&
			    !reg_org_slug(txn, mb.m.net, org, sizeof(org)) &&
			    !kvkey_machine(org, mid, old, sizeof(old)) && strcmp(old, key) != 0 &&
			    !(ln->oldkey = strdup(old)))
				rc = -ENOMEM;
		}
	}
	reg_txn_abort(txn);
	*out = lines, *nout = n;
	return rc;
}

/* A put after orgs and regions (the third pass). */
static bool rest_put(const line_t *ln)
{
	return ln->key && !ln->del && ln->kind != KVKEY_ORG && ln->kind != KVKEY_REGION;
}

/* Who a put is, to find it as the holder of an address: a Machine's id, a peer's key. */
typedef struct {
	const char *s;
	size_t line;
} who_t;

static int cmp_who(const void *a, const void *b)
{
	return strcasecmp(((const who_t *)a)->s, ((const who_t *)b)->s);
}

/*
 * The order of the puts after orgs and regions, into order[0..*n): file order, except
 * that a Machine or peer that takes an address which another record of the file holds in
 * the bucket comes after that record (which moves away, stops or goes: the checks refused
 * the file otherwise), and that one after the holder of its own new address, along a
 * chain of handovers of any length. A follower that applies them in separate
 * transactions (--batch 1, or a batch boundary between two of them) then never meets an
 * address still held, as import's rounds never do. A holder the file deletes is deleted
 * before every put; a cycle (two records that swap addresses) was refused by the checks.
 */
static int order_puts(reg_t *scratch, const line_t *lines, size_t n, size_t *order, size_t *norder)
{
	size_t *dep = malloc((n + 1) * sizeof(*dep)), *path = malloc((n + 1) * sizeof(*path));
	who_t *who = malloc((n + 1) * sizeof(*who));
	bool *done = calloc(n + 1, sizeof(*done));
	size_t nwho = 0, m = 0;
	reg_txn_t *txn = NULL;
	int rc = !dep || !path || !who || !done ? -ENOMEM : reg_txn_begin(scratch, false, &txn);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++) {
		dep[i] = SIZE_MAX;
		if (rest_put(&lines[i]) && lines[i].kind == KVKEY_MACHINE)
			who[nwho++] = (who_t){strrchr(lines[i].key, '.') + 1, i};
		else if (rest_put(&lines[i]) && lines[i].kind == KVKEY_PEER)
			who[nwho++] = (who_t){lines[i].key, i};
	}
	qsort(who, nwho, sizeof(*who), cmp_who);
	for (size_t i = 0; i < n; i++) {
		const line_t *ln = &lines[i];
		reg_hit_t h;
		char id[KVKEY_MAX], org[REG_LABEL_MAX + 1];
		if (!rest_put(ln) || !ln->addr.set || !ln->addr.holds ||
		    reg_find_addr(txn, ln->addr.ip, true, &h))
			continue; /* it needs no free address, or its address is free */
		if (h.kind == REG_HIT_MACHINE)
			snprintf(id, sizeof(id), "%.*s", (int)h.id_len, h.id);
		else if (!reg_org_slug(txn, h.net, org, sizeof(org)))
			snprintf(id, sizeof(id), "peer.%s.%.*s", org, (int)h.id_len, h.id);
		else
			continue;
		who_t k = {id, 0}, *f = bsearch(&k, who, nwho, sizeof(*who), cmp_who);
		if (f && f->line != i)
			dep[i] = f->line;
	}
	for (size_t i = 0; i < n; i++) { /* each put after the chain of holders before it */
		size_t np = 0;
		if (!rest_put(&lines[i]))
			continue;
		for (size_t j = i; j != SIZE_MAX && !done[j]; j = dep[j]) {
			done[j] = true;
			path[np++] = j;
		}
		while (np)
			order[m++] = path[--np];
	}
out:
	reg_txn_abort(txn);
	free(dep);
	free(path);
	free(who);
	free(done);
	*norder = m;
	return rc;
}

/* A put of one line, unless the bucket holds that value already (counted in *nsame). */
static int put_line(kv_bucket_t *b, const bucket_map_t *m, const char *buf, const line_t *ln,
                    uint64_t *nsame)
{
	if (unchanged(m, ln->key, buf + ln->off, ln->len)) {
		(*nsame)++;
		return 0;
	}
	return kv_put(b, ln->key, buf + ln->off, ln->len);
}

static bool org_or_region(int kind)
{
	return kind == KVKEY_ORG || kind == KVKEY_REGION;
}

/* Write step 1: the file's orgs and regions, in file order, before anything under them. */
static int put_orgs_regions(kv_bucket_t *b, const bucket_map_t *m, const char *buf,
                            const line_t *lines, size_t n, uint64_t *nsame)
{
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++)
		if (lines[i].key && !lines[i].del && org_or_region(lines[i].kind))
			rc = put_line(b, m, buf, &lines[i], nsame);
	return rc;
}

/* Write steps 2 and 4: the deletes of everything but orgs and regions (!orgs), then,
 * after every put, those of orgs and regions (orgs): no org goes before its records. */
static int delete_keys(kv_bucket_t *b, char **dels, size_t n, bool orgs)
{
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++)
		if (org_or_region(kvkey_kind(dels[i])) == orgs)
			rc = kv_delete(b, dels[i]);
	return rc;
}

/* Write step 3: the other records, in order_puts' order. */
static int put_rest(kv_bucket_t *b, const bucket_map_t *m, const char *buf, const line_t *lines,
                    const size_t *order, size_t n, uint64_t *nsame)
{
	int rc = 0;
	for (size_t k = 0; k < n && !rc; k++)
		rc = put_line(b, m, buf, &lines[order[k]], nsame);
	return rc;
}

/*
 * The keys to delete, each once, into *out (allocated; its strings are the lines' and
 * the map's): the file's deletes, the old keys of the Machines it moves to another org
 * and, with replace, the bucket's keys the file puts nothing under (a key the file
 * deletes itself, or a moved Machine's old key, is both). A delete of what the bucket
 * does not hold writes nothing, so it is left out.
 */
static int plan_deletes(const bucket_map_t *m, bool replace, const line_t *lines, size_t nlines,
                        char ***out, size_t *nout)
{
	char **bkeys = NULL, **fkeys = NULL, **dels = NULL;
	size_t nbkeys = 0, nf = 0, ndel = 0, nheld = 0;
	int rc = replace ? bucket_keys(m, &bkeys, &nbkeys) : 0;
	if (rc)
		return rc;
	fkeys = calloc(nlines + 1, sizeof(*fkeys));
	dels = calloc(2 * nlines + nbkeys + 1, sizeof(*dels));
	if (!fkeys || !dels) {
		free(bkeys);
		free(fkeys);
		free(dels);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nlines; i++) {
		if (lines[i].key)
			*(lines[i].del ? &dels[ndel++] : &fkeys[nf++]) = lines[i].key;
		if (lines[i].oldkey)
			dels[ndel++] = lines[i].oldkey;
	}
	qsort(fkeys, nf, sizeof(*fkeys), cmp_str);
	for (size_t i = 0; i < nbkeys; i++)
		if (!bsearch(&bkeys[i], fkeys, nf, sizeof(*fkeys), cmp_str))
			dels[ndel++] = bkeys[i];
	ndel = sort_unique(dels, ndel);
	for (size_t i = 0; i < ndel; i++)
		if (held(m, dels[i]))
			dels[nheld++] = dels[i];
	free(bkeys); /* its keys are the map's */
	free(fkeys);
	*out = dels, *nout = nheld;
	return 0;
}

/*
 * The file, validated against the bucket's content in scratch as import validates it:
 * jsonl_parse, the key of every line, then jsonl_apply in a transaction thrown away.
 * 0, or -EINVAL after saying why and that nothing was published. *j and *lines are
 * the caller's to free, also on failure.
 */
static int validate_file(reg_t *scratch, const publish_opts_t *o, char *buf, size_t len,
                         const char *name, jsonl_t **j, line_t **lines, size_t *nlines)
{
	char err[JSONL_ERR_MAX] = "";
	FILE *mf = len ? fmemopen(buf, len, "r") : fopen("/dev/null", "r");
	int rc = mf ? jsonl_parse(mf, name, j, err) : -errno;
	if (mf)
		fclose(mf);
	if (!rc)
		rc = line_keys(scratch, name, buf, len, lines, nlines);
	if (!rc) {
		check_t c = {*j, o->replace, err};
		rc = reg_write(scratch, check_fn, &c);
		rc = rc == CHECKED ? 0 : rc;
	}
	if (!rc)
		return 0;
	if (err[0])
		fprintf(stderr, "internalctl: %s\n", err);
	else if (rc != -EINVAL)
		fprintf(stderr, "internalctl: publish: %s\n", reg_strerror(rc));
	fprintf(stderr, "internalctl: nothing was published; bucket %s is unchanged\n", o->bucket);
	return -EINVAL;
}

/*
 * --db DIR: the registry a follower of the bucket keeps (internalctl follow --db DIR),
 * opened as a second writer once the follower has applied the bucket's head sequence,
 * read now (a stream's last sequence: one request). Waits for it up to --ack-wait,
 * looking every 20 ms. 0 with *out open: validate against it; 1: not at the head in
 * time, or following another stream or nothing yet (said why; the caller reads the whole
 * bucket as without --db); < 0: DIR is no registry, or follows another bucket (said
 * why: refused). DIR is opened without REG_WRITEMAP: publish never commits there, and
 * LMDB then keeps a thrown-away transaction's pages in this process's memory (with the
 * write map it would also ftruncate data.mdb to this process's map size at open, which
 * could cut pages the follower's own transaction is writing), so the follower's
 * committed pages are never touched and its file never cut.
 */
static int db_at_head(const publish_opts_t *o, kv_bucket_t *b, reg_t **out)
{
	char path[4096];
	kv_info_t info;
	reg_follow_t f = {0};
	reg_t *ro = NULL;
	int rc;
	snprintf(path, sizeof(path), "%s/data.mdb", o->db);
	if (access(path, F_OK) != 0) {
		fprintf(stderr, "internalctl: publish: --db %s: no registry there (%s)\n", o->db,
		        strerror(errno));
		return -ENOENT;
	}
	if ((rc = kv_info(b, &info))) {
		fprintf(stderr, "internalctl: publish: bucket %s: %s\n", o->bucket,
		        kv_strerror(rc));
		return rc;
	}
	if ((rc = reg_open(&ro, o->db, REG_RDONLY, 0))) {
		fprintf(stderr, "internalctl: publish: --db %s: %s\n", o->db, reg_strerror(rc));
		return rc;
	}
	long wait_ms = o->ack_wait_ms > 0 ? o->ack_wait_ms : KV_ACK_WAIT_MS;
	double until = clock_mono_s() + wait_ms / 1000.0;
	bool at_head = false, same = false;
	for (;;) {
		reg_txn_t *txn;
		rc = reg_txn_begin(ro, false, &txn);
		if (!rc) {
			rc = reg_get_follow(txn, &f);
			reg_txn_abort(txn);
		}
		if (rc && rc != -ENOENT)
			break;
		if (!rc && strcmp(f.bucket, o->bucket) != 0) {
			rc = -EINVAL;
			break;
		}
		same = !rc && f.synced &&
		       (strcmp(f.stream, info.id) == 0 ||
		        (info.origin[0] && strcmp(f.stream, info.origin) == 0));
		if ((at_head = same && f.seq >= info.last) || clock_mono_s() >= until)
			break;
		nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
	}
	reg_close(ro);
	if (rc == -EINVAL) {
		fprintf(stderr,
		        "internalctl: publish: --db %s follows bucket %s, not %s: nothing was "
		        "published\n",
		        o->db, f.bucket, o->bucket);
		return rc;
	}
	if (rc && rc != -ENOENT) {
		fprintf(stderr, "internalctl: publish: --db %s: %s\n", o->db, reg_strerror(rc));
		return rc;
	}
	if (!at_head) {
		if (rc == -ENOENT)
			fprintf(stderr, "internalctl: publish: --db %s follows no bucket", o->db);
		else if (!same)
			fprintf(stderr,
			        "internalctl: publish: --db %s has not synced bucket %s as it is "
			        "now",
			        o->db, o->bucket);
		else
			fprintf(stderr,
			        "internalctl: publish: --db %s applied sequence %llu, the bucket's "
			        "head is %llu (waited %ld s)",
			        o->db, (unsigned long long)f.seq, (unsigned long long)info.last,
			        wait_ms / 1000);
		fprintf(stderr, "; reading the whole bucket instead\n");
		return 1;
	}
	if ((rc = reg_open(out, o->db, 0, 0))) {
		fprintf(stderr, "internalctl: publish: --db %s: %s\n", o->db, reg_strerror(rc));
		return rc;
	}
	fprintf(stderr,
	        "internalctl: publish: checking against --db %s, at the bucket's head (sequence "
	        "%llu)\n",
	        o->db, (unsigned long long)info.last);
	return 0;
}

/* With --db: what the bucket holds under each key the file puts, deletes or moves from,
 * one kv_get each, into m (as map_seen would have it from the whole bucket). */
static int point_map(kv_bucket_t *b, const line_t *lines, size_t n, bucket_map_t *m)
{
	for (size_t i = 0; i < 2 * n; i++) {
		const char *key = i % 2 ? lines[i / 2].oldkey : lines[i / 2].key;
		const held_t *h = key ? map_find(m, key) : NULL;
		char *v = NULL;
		size_t len = 0;
		int op, rc;
		if (!key || (h && h->key))
			continue;
		if ((rc = kv_get(b, key, &op, &v, &len)) == -ENOENT)
			continue; /* never written, or gone: neither held nor the same */
		if (rc)
			return rc;
		map_seen(m, &(kv_msg_t){.key = key, .value = v, .len = len, .op = op});
		free(v);
		if (m->rc)
			return m->rc;
	}
	return 0;
}

/* Whether a failure is NATS's for now (a node lost, a leader being elected). */
static bool transient(int rc)
{
	return rc == -ETIMEDOUT || rc == -EIO || rc == -ENOTCONN;
}

/* One attempt: connect, mirror and validate, write what differs. *state: what the
 * failure was (ATTEMPT_*), for publish_run to decide whether to try again. */
enum { ATTEMPT_DONE, ATTEMPT_REFUSED, ATTEMPT_NATS };

static int publish_once(const publish_opts_t *o, char *buf, size_t len, const char *name,
                        int *state)
{
	char **dels = NULL;
	char scratch_dir[] = "/tmp/internalctl-publish.XXXXXX";
	size_t nlines = 0, ndel = 0, nput = 0, *puts = NULL;
	uint64_t nputs = 0, ndels = 0, nsame = 0;
	bucket_map_t held_map = {0};
	line_t *lines = NULL;
	kv_conn_t *conn = NULL;
	kv_bucket_t *b = NULL;
	reg_t *scratch = NULL, *dbreg = NULL, *view = NULL;
	jsonl_t *j = NULL;
	bool have_scratch = false;
	int rc;

	*state = ATTEMPT_NATS;
	if ((rc = kv_connect_opts(&conn, o->nats, false)) ||
	    (rc = kv_bucket_open(conn, o->bucket, o->replicas, o->ack_wait_ms, &b))) {
		char url[256];
		fprintf(stderr, "internalctl: publish: NATS at %s, bucket %s: %s\n",
		        kv_url_public(o->nats->urls[0], url, sizeof(url)), o->bucket,
		        kv_strerror(rc));
		goto out;
	}
	if (o->db && o->replace)
		fprintf(stderr,
		        "internalctl: publish: --replace reads the whole bucket (--db %s "
		        "is not used)\n",
		        o->db);
	else if (o->db && (rc = db_at_head(o, b, &dbreg)) < 0) {
		if (!transient(rc))
			*state = ATTEMPT_REFUSED;
		goto out;
	}
	if (dbreg) {
		view = dbreg;
		goto validate;
	}
	/* the bucket's content, validated as a follower validates it */
	if (!mkdtemp(scratch_dir)) {
		rc = -errno;
		fprintf(stderr, "internalctl: publish: scratch registry: %s\n", strerror(errno));
		goto out;
	}
	have_scratch = true;
	follow_stats_t st;
	if ((rc = reg_open(&scratch, scratch_dir, REG_NOSYNC | REG_WRITEMAP, 0)) ||
	    (rc = follow_mirror(scratch, b, o->bucket,
	                        o->ack_wait_ms > 0 ? o->ack_wait_ms : KV_ACK_WAIT_MS, map_seen,
	                        &held_map, &st))) {
		fprintf(stderr, "internalctl: publish: reading bucket %s: %s\n", o->bucket,
		        rc == -ENOTCONN || rc == -ETIMEDOUT || rc == -EIO ? kv_strerror(rc)
		                                                          : reg_strerror(rc));
		goto out;
	}
	if (st.skipped)
		fprintf(stderr,
		        "internalctl: publish: the bucket holds %llu values that do not validate "
		        "(ignored; see the warnings above)\n",
		        (unsigned long long)st.skipped);
	view = scratch;
validate:
	if ((rc = validate_file(view, o, buf, len, name, &j, &lines, &nlines))) {
		*state = ATTEMPT_REFUSED;
		goto out;
	}
	if (dbreg && (rc = point_map(b, lines, nlines, &held_map))) {
		fprintf(stderr, "internalctl: publish: reading bucket %s: %s\n", o->bucket,
		        kv_strerror(rc));
		goto out;
	}
	if ((rc = plan_deletes(&held_map, o->replace, lines, nlines, &dels, &ndel)))
		goto write_failed;
	if (!(puts = malloc((nlines + 1) * sizeof(*puts)))) {
		rc = -ENOMEM;
		goto write_failed;
	}
	if ((rc = order_puts(view, lines, nlines, puts, &nput)))
		goto write_failed;
	/* orgs and regions, deletes, the other records, then deletes of orgs and regions:
	 * a follower that gets them in separate batches never sees a record before its org,
	 * nor an org deleted before its records */
	if ((rc = put_orgs_regions(b, &held_map, buf, lines, nlines, &nsame)) ||
	    (rc = delete_keys(b, dels, ndel, false)) ||
	    (rc = put_rest(b, &held_map, buf, lines, puts, nput, &nsame)) ||
	    (rc = delete_keys(b, dels, ndel, true)))
		goto write_failed;
	if ((rc = kv_flush(b)))
		goto write_failed;
	kv_acked(b, &nputs, &ndels);
	*state = ATTEMPT_DONE;
	fprintf(stderr,
	        "internalctl: published %llu records and %llu deletes to bucket %s; %llu records "
	        "unchanged\n",
	        (unsigned long long)nputs, (unsigned long long)ndels, o->bucket,
	        (unsigned long long)nsame);
	goto out;
write_failed:
	/* what the server has stored, not what was sent: a refused write is not counted, nor
	 * one whose answer never came */
	kv_acked(b, &nputs, &ndels);
	fprintf(stderr,
	        "internalctl: publish: writing bucket %s failed after %llu acknowledged puts and "
	        "%llu deletes: %s (%s)\n",
	        o->bucket, (unsigned long long)nputs, (unsigned long long)ndels, kv_strerror(rc),
	        rc == -EREMOTEIO
	                ? "the server refuses that write, and will refuse it again: fix the record "
	                  "or the bucket's limits, then publish the file again"
	        : rc == -EACCES
	                ? "this NATS user may not write the bucket: publish as the publisher (see "
	                  "internalctl(8), FLEET)"
	                : "publish the file again: puts and deletes are idempotent");
out:
	jsonl_free(j);
	for (size_t i = 0; i < nlines; i++) {
		free(lines[i].key);
		free(lines[i].oldkey);
	}
	free(lines);
	map_free(&held_map);
	free(dels);
	free(puts);
	if (scratch)
		reg_close(scratch);
	if (dbreg)
		reg_close(dbreg);
	if (have_scratch)
		remove_scratch(scratch_dir);
	kv_bucket_close(b);
	kv_close(conn);
	if (rc == -EREMOTEIO || rc == -EACCES || rc == -ENOMEM)
		*state = ATTEMPT_REFUSED; /* the same again would fail the same way */
	return rc;
}

int publish_run(const publish_opts_t *o)
{
	const char *name = strcmp(o->file, "-") == 0 ? "<stdin>" : o->file;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = strcmp(o->file, "-") == 0 ? stdin : fopen(o->file, "r");
	if (!f) {
		fprintf(stderr, "internalctl: %s: %s\n", o->file, strerror(errno));
		return -errno;
	}
	int rc = read_all(f, &buf, &len), state = ATTEMPT_NATS;
	if (f != stdin)
		fclose(f);
	if (rc) {
		fprintf(stderr, "internalctl: %s: %s\n", name, strerror(-rc));
		return rc;
	}
	/* NATS failing for now (a node of the cluster lost mid-publish, its streams electing
	 * new leaders) is tried again, through the next live server, for up to twice
	 * --ack-wait after the first failure, and at least PUBLISH_RETRY_MIN_S (an R3
	 * stream's new leader took over 10 s to be elected after a node stopped: with
	 * --ack-wait 5 the second attempt failed too and publish gave up): each attempt
	 * mirrors the bucket again, so what an earlier one stored is not written twice, and
	 * what it lost is */
	double t0 = 0, budget = 2.0 * (o->ack_wait_ms > 0 ? o->ack_wait_ms : KV_ACK_WAIT_MS) / 1000;
	if (budget < PUBLISH_RETRY_MIN_S)
		budget = PUBLISH_RETRY_MIN_S;
	for (int attempt = 1;; attempt++) {
		rc = publish_once(o, buf, len, name, &state);
		if (!rc && attempt > 1)
			fprintf(stderr,
			        "internalctl: publish: done at attempt %d (records an earlier "
			        "attempt "
			        "stored count as unchanged)\n",
			        attempt);
		if (!rc || state != ATTEMPT_NATS || !transient(rc) || attempt == PUBLISH_ATTEMPTS)
			break;
		if (attempt == 1)
			t0 = clock_mono_s();
		else if (clock_mono_s() - t0 >= budget)
			break;
		fprintf(stderr, "internalctl: publish: trying again (attempt %d of at most %d)\n",
		        attempt + 1, PUBLISH_ATTEMPTS);
		nanosleep(&(struct timespec){0, 500 * 1000 * 1000}, NULL);
	}
	free(buf);
	return rc;
}
