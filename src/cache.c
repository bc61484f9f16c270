/*
 * cache.c — forwarded answers in memory, shared by the workers (include/cache.h).
 *
 * Shards chosen by the key's hash, each a chained hash table and a CLOCK ring (second
 * chance: a hit only sets the entry's bit, the inserter's hand clears it or evicts)
 * behind one mutex: a lookup holds it for the walk and one copy of at most the client's
 * UDP size, so a reader waits at most for one other copy or one insert; evicted entries
 * are freed after the lock is released. bench/cachebench measures it: a hit writes
 * nothing a writer of the shard writes but the lock's line. Entries are one malloc
 * each (on the miss path only): the key name, the TTL offsets and the message.
 * It must never touch a socket, a loop or a clock, and never allocate in cache_lookup.
 */
#include "cache.h"
#include "bytes.h"
#include "list.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define SHARDS_MAX     64
#define SHARD_MIN      (64 * 1024) /* bytes a shard gets at least */
#define BUCKET_BYTES   512         /* one bucket per this many bytes of budget: the most */
#define BUCKETS_MIN    16          /* a shard's table at first; it doubles as entries come */
#define FLIGHT_BUCKETS 1024
#define NEVER          UINT64_MAX /* entry_t.prefetch_ms: the refresh was asked for */

#define BIT_EDNS 1
#define BIT_DO   2
#define BIT_CD   4

typedef struct entry {
	struct entry *hnext, *prev, *next;
	uint64_t hash;
	uint64_t stored_ms, expire_ms, recheck_ms;
	uint32_t ttl, cap_ttl;
	size_t charged;
	uint16_t len, nttl, qtype, qclass;
	uint8_t bits, keylen;
	uint32_t scope;       /* the org's (wire_query_t.scope): in the padding, no cost */
	uint64_t prefetch_ms; /* a hit may ask for a refresh from then on; NEVER once asked */
	bool ref;             /* CLOCK: used since the hand last passed */
	uint16_t ttl_off[];   /* [nttl], then key[keylen], then msg[len] */
} entry_t;

/* What a lookup writes (the lock, its counters) shares one cache line; what only
 * inserts write lives on the next ones, so a reader's lookup does not pull the lines
 * a writer of the same shard just wrote. */
typedef struct {
	_Alignas(64) pthread_mutex_t lock;
	uint64_t hits, servfail, misses, stale, prefetches;
	_Alignas(64) entry_t **buckets;
	size_t mask, max_mask; /* the table grows to max_mask + 1 buckets */
	entry_t *head, *tail;  /* newest / oldest inserted: the CLOCK's ring, hand at tail */
	size_t bytes, max;
	uint64_t entries, inserts, evictions;
} shard_t;

struct cache {
	cache_conf_t conf;
	uint64_t seed;
	unsigned nshards;
	size_t fixed; /* bytes of the cache struct, shards and tables (at their largest) */
	shard_t *shards;
	pthread_mutex_t flock;
	cache_waiter_t *flights[FLIGHT_BUCKETS];
};

/* What malloc takes for n bytes (glibc: an 8-byte header, 16-byte chunks, 32 at least). */
static size_t charge(size_t n)
{
	size_t c = (n + 8 + 15) & ~(size_t)15;
	return c < 32 ? 32 : c;
}

static uint8_t query_bits(const wire_query_t *q)
{
	return (uint8_t)((q->edns ? BIT_EDNS : 0) | (q->edns_do ? BIT_DO : 0) |
	                 (q->cd ? BIT_CD : 0));
}

static uint64_t key_hash(const cache_t *c, const wire_query_t *q, uint8_t bits)
{
	uint64_t h = c->seed ^ 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < q->qname_len; i++)
		h = (h ^ q->qname[i]) * 0x100000001b3ULL;
	h ^= (uint64_t)q->scope << 32 | (uint64_t)q->qtype << 24 | (uint64_t)q->qclass << 8 | bits;
	h *= 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

static shard_t *shard_of(cache_t *c, uint64_t h)
{
	return &c->shards[(h >> 48) & (c->nshards - 1)];
}

static uint16_t *ttl_offs(entry_t *e)
{
	return e->ttl_off;
}

static uint8_t *key_of(entry_t *e)
{
	return (uint8_t *)(e->ttl_off + e->nttl);
}

static uint8_t *msg_of(entry_t *e)
{
	return key_of(e) + e->keylen;
}

/* ---- create / free -------------------------------------------------------------------- */

int cache_create(cache_t **out, const cache_conf_t *conf)
{
	if (conf->max_bytes < CACHE_MIN_BYTES)
		return -EINVAL;
	cache_t *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->conf = *conf;
	if (getrandom(&c->seed, sizeof(c->seed), 0) != sizeof(c->seed))
		c->seed = (uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ULL;
	unsigned n = 1;
	while (n < SHARDS_MAX && conf->max_bytes / (n * 2) >= SHARD_MIN)
		n *= 2;
	c->nshards = n;
	c->shards = aligned_alloc(_Alignof(shard_t), n * sizeof(*c->shards));
	if (c->shards)
		memset(c->shards, 0, n * sizeof(*c->shards));
	if (!c->shards) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->flock, NULL);
	size_t per = conf->max_bytes / n, nb = 16;
	while (nb * BUCKET_BYTES < per)
		nb *= 2;
	c->fixed = charge(sizeof(*c)) + charge(n * sizeof(*c->shards)) +
	           n * charge(nb * sizeof(entry_t *));
	for (unsigned i = 0; i < n; i++) {
		shard_t *s = &c->shards[i];
		pthread_mutex_init(&s->lock, NULL);
		size_t first = nb < BUCKETS_MIN ? nb : BUCKETS_MIN;
		s->buckets = calloc(first, sizeof(entry_t *));
		if (!s->buckets) {
			cache_free(c);
			return -ENOMEM;
		}
		s->mask = first - 1;
		s->max_mask = nb - 1;
		s->max = conf->max_bytes > c->fixed ? (conf->max_bytes - c->fixed) / n : 0;
	}
	*out = c;
	return 0;
}

void cache_free(cache_t *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nshards; i++) {
		shard_t *s = &c->shards[i];
		for (entry_t *e = s->head, *next; e; e = next) {
			next = e->next;
			free(e);
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	pthread_mutex_destroy(&c->flock);
	free(c->shards);
	free(c);
}

/* ---- a shard's table and list (its lock held) ------------------------------------------- */

static entry_t *find(shard_t *s, uint64_t h, const wire_query_t *q, uint8_t bits)
{
	for (entry_t *e = s->buckets[h & s->mask]; e; e = e->hnext)
		if (e->hash == h && e->qtype == q->qtype && e->qclass == q->qclass &&
		    e->bits == bits && e->scope == q->scope && e->keylen == q->qname_len &&
		    memcmp(key_of(e), q->qname, q->qname_len) == 0)
			return e;
	return NULL;
}

/* The CLOCK's ring is a list, head the newest, the hand at the tail: ring_take takes an
 * entry out of it, ring_push puts one at the head (stored, or given its second chance). */
static void ring_take(shard_t *s, entry_t *e)
{
	if (s->tail == e)
		s->tail = e->prev;
	LIST_UNLINK(&s->head, e, prev, next);
}

static void ring_push(shard_t *s, entry_t *e)
{
	LIST_PUSH(&s->head, e, prev, next);
	if (!s->tail)
		s->tail = e;
}

/* Doubles the shard's table (its lock held) once it holds more entries than buckets: a
 * table sized for the whole budget would be mostly empty, and each lookup would miss the
 * cache on a bucket of it (the kernel's path between two queries evicts it). Counted in
 * c->fixed at its largest from the start, so the byte bound holds as it grows. Without
 * memory it stays as it is: longer chains, still right. */
static void grow(shard_t *s)
{
	if (s->entries <= s->mask + 1 || s->mask >= s->max_mask)
		return;
	size_t nb = (s->mask + 1) * 2;
	entry_t **b = calloc(nb, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i <= s->mask; i++)
		for (entry_t *e = s->buckets[i], *next; e; e = next) {
			next = e->hnext;
			entry_t **d = &b[e->hash & (nb - 1)];
			e->hnext = *d;
			*d = e;
		}
	free(s->buckets);
	s->buckets = b;
	s->mask = nb - 1;
}

/* Takes e out of the shard; the caller frees it (after unlocking: free touches cold
 * memory, and readers of the shard must not wait for that). */
static entry_t *unlink_entry(shard_t *s, entry_t *e)
{
	entry_t **pp = &s->buckets[e->hash & s->mask];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	ring_take(s, e);
	s->bytes -= e->charged;
	s->entries--;
	return e;
}

static void free_list(entry_t *e)
{
	while (e) {
		entry_t *next = e->hnext;
		free(e);
		e = next;
	}
}

/* ---- lookup ---------------------------------------------------------------------------- */

/* A SERVFAIL kept by cache_insert_servfail (cache_insert stores no SERVFAIL). */
static bool is_servfail(entry_t *e)
{
	return (msg_of(e)[3] & 0x0f) == WIRE_SERVFAIL;
}

/* Writes e as the answer to pkt/q; stale: every TTL 30. */
static size_t write_answer(entry_t *e, const uint8_t *pkt, const wire_query_t *q, size_t max,
                           uint64_t now_ms, bool stale, uint8_t *out, size_t cap)
{
	const uint8_t *m = msg_of(e);
	size_t n = e->len;
	bool tc = n > max;
	if (tc)
		n = q->question_end;
	if (n > cap || q->question_end > e->len)
		return 0;
	memcpy(out, m, n);
	wire_answer_for(out, pkt, q);
	if (tc)
		return wire_truncate(out, cap, q);
	/* workers' clocks are read at different moments: one may be behind the writer's */
	uint32_t elapsed = now_ms > e->stored_ms ? (uint32_t)((now_ms - e->stored_ms) / 1000) : 0;
	const uint16_t *off = ttl_offs(e);
	for (unsigned i = 0; i < e->nttl; i++) {
		uint32_t t = get_be32(m + off[i]);
		if (t > e->cap_ttl)
			t = e->cap_ttl;
		t = stale ? CACHE_STALE_TTL : t > elapsed ? t - elapsed : 0;
		put_be32(out + off[i], t);
	}
	return n;
}

/* q's entry, or NULL, with its shard's lock taken (*sp: the shard, to unlock). */
static entry_t *find_locked(cache_t *c, const wire_query_t *q, shard_t **sp)
{
	uint8_t bits = query_bits(q);
	uint64_t h = key_hash(c, q, bits);
	shard_t *s = *sp = shard_of(c, h);
	pthread_mutex_lock(&s->lock);
	return find(s, h, q, bits);
}

int cache_lookup(cache_t *c, const uint8_t *pkt, const wire_query_t *q, size_t max, uint64_t now_ms,
                 bool stale_ok, uint8_t *out, size_t cap, size_t *len)
{
	int rc = CACHE_MISS;
	entry_t *dead = NULL;
	shard_t *s;
	entry_t *e = find_locked(c, q, &s);
	if (!e) {
		if (!stale_ok)
			s->misses++;
		goto out;
	}
	uint64_t stale_end = e->expire_ms + (uint64_t)c->conf.stale_ttl * 1000;
	bool prefetch = false;
	if (now_ms < e->expire_ms) {
		rc = CACHE_HIT;
		/* the last 10% of its TTL: one background refresh, asked for by a client's
		 * lookup (a stale-mode one has no client of its own and starts none) */
		prefetch = !stale_ok && now_ms >= e->prefetch_ms &&
		           (e->expire_ms - now_ms) * 10 < (uint64_t)e->ttl * 1000;
	} else if (now_ms >= stale_end || is_servfail(e)) { /* a SERVFAIL is never stale */
		dead = unlink_entry(s, e);
		if (!stale_ok)
			s->misses++;
		goto out;
	} else if (stale_ok || now_ms < e->recheck_ms) {
		rc = CACHE_STALE;
	} else {
		s->misses++;
		goto out;
	}
	*len = write_answer(e, pkt, q, max, now_ms, rc == CACHE_STALE, out, cap);
	if (!*len) {
		rc = CACHE_MISS;
		goto out;
	}
	/* counted once written: what a client was sent; a stored SERVFAIL is no hit */
	if (rc == CACHE_STALE)
		s->stale++;
	else if (is_servfail(e))
		s->servfail++;
	else
		s->hits++;
	if (prefetch) {
		e->prefetch_ms = NEVER;
		rc = CACHE_HIT_PREFETCH;
		s->prefetches++;
	}
	if (!e->ref)
		e->ref = true;
out:
	pthread_mutex_unlock(&s->lock);
	free(dead);
	return rc;
}

/* ---- insert ----------------------------------------------------------------------------- */

typedef struct {
	uint16_t offs[WIRE_TCP_MAX / 11 + 1];
	unsigned n;
	uint32_t min_ttl; /* of every record but OPT, in every section */
	bool soa;         /* an SOA in the authority section */
	bool has_qtype;   /* the answer section has a record of the question's type */
	uint32_t soa_min;
} scan_t;

/* Walks every record; the TTL offsets of all but OPT. */
static int scan(const uint8_t *m, size_t len, uint16_t qtype, scan_t *sc)
{
	if (len < WIRE_HDR || get_be16(m + 4) != 1)
		return -EINVAL;
	size_t off = WIRE_HDR;
	if (wire_skip_name(m, len, &off) || off + 4 > len)
		return -EINVAL;
	off += 4;
	unsigned count[3] = {get_be16(m + 6), get_be16(m + 8), get_be16(m + 10)};
	sc->n = 0, sc->min_ttl = UINT32_MAX, sc->soa = sc->has_qtype = false;
	for (int sec = 0; sec < 3; sec++)
		for (unsigned i = 0; i < count[sec]; i++) {
			if (wire_skip_name(m, len, &off) || off + 10 > len)
				return -EINVAL;
			uint16_t type = get_be16(m + off), rdlen = get_be16(m + off + 8);
			uint32_t ttl = get_be32(m + off + 4);
			size_t toff = off + 4;
			off += 10;
			if (off + rdlen > len)
				return -EINVAL;
			if (type == WIRE_OPT) {
				if (sec != 2 || (ttl >> 24) != 0)
					return -EINVAL; /* an extended rcode: not an answer to keep
					                 */
			} else {
				if (ttl > 0x7fffffff) /* RFC 2181 section 8: treat as 0 */
					ttl = 0;
				sc->offs[sc->n++] = (uint16_t)toff;
				if (ttl < sc->min_ttl)
					sc->min_ttl = ttl;
				if (sec == 0 && (type == qtype || qtype == WIRE_ANY))
					sc->has_qtype = true;
				if (sec == 1 && type == WIRE_SOA && rdlen >= 22 && !sc->soa) {
					sc->soa = true;
					sc->soa_min = get_be32(m + off + rdlen - 4);
				}
			}
			off += rdlen;
		}
	return off == len ? 0 : -EINVAL;
}

static int store(cache_t *c, const wire_query_t *q, const uint8_t *msg, size_t len,
                 const uint16_t *offs, unsigned n, uint32_t ttl, uint32_t cap_ttl, uint64_t now_ms)
{
	uint8_t bits = query_bits(q);
	uint64_t h = key_hash(c, q, bits);
	shard_t *s = shard_of(c, h);
	size_t size = sizeof(entry_t) + n * sizeof(uint16_t) + q->qname_len + len;
	size_t charged = charge(size);
	if (charged > s->max / 4 || len > WIRE_TCP_MAX)
		return -ENOSPC;
	entry_t *e = malloc(size);
	if (!e)
		return -ENOMEM;
	memset(e, 0, sizeof(*e));
	e->hash = h;
	e->stored_ms = now_ms;
	e->expire_ms = now_ms + (uint64_t)ttl * 1000;
	e->ttl = ttl, e->cap_ttl = cap_ttl;
	e->charged = charged;
	e->len = (uint16_t)len, e->nttl = (uint16_t)n;
	e->qtype = q->qtype, e->qclass = q->qclass;
	e->bits = bits, e->keylen = (uint8_t)q->qname_len;
	e->scope = q->scope;
	if (n)
		memcpy(ttl_offs(e), offs, n * sizeof(uint16_t));
	memcpy(key_of(e), q->qname, q->qname_len);
	memcpy(msg_of(e), msg, len);
	pthread_mutex_lock(&s->lock);
	entry_t *old = find(s, h, q, bits), *dead = NULL;
	if (old)
		dead = unlink_entry(s, old), dead->hnext = NULL;
	entry_t **b = &s->buckets[h & s->mask];
	e->hnext = *b;
	*b = e;
	ring_push(s, e);
	s->bytes += charged;
	s->entries++;
	s->inserts++;
	grow(s);
	/* CLOCK, the hand at the tail: an entry used since the hand last passed gets a second
	 * chance at the front, its bit cleared; so does the one just stored, so that the hand
	 * goes on to those it put in front of it. The others go. */
	while (s->bytes > s->max && s->entries > 1) {
		entry_t *x = s->tail;
		if (x->ref || x == e) {
			x->ref = false;
			ring_take(s, x);
			ring_push(s, x);
			continue;
		}
		unlink_entry(s, x);
		x->hnext = dead;
		dead = x;
		s->evictions++;
	}
	pthread_mutex_unlock(&s->lock);
	free_list(dead);
	return 0;
}

int cache_insert(cache_t *c, const wire_query_t *q, const uint8_t *resp, size_t len,
                 uint64_t now_ms)
{
	static _Thread_local scan_t sc;
	static _Thread_local uint8_t msg[WIRE_TCP_MAX];
	if (len < WIRE_HDR || len > sizeof(msg) || !wire_answers(q, get_be16(resp), resp, len))
		return -EINVAL;
	if (resp[2] & 0x02) /* TC: the TCP retry's answer is the one to keep */
		return -EINVAL;
	memcpy(msg, resp, len); /* kept without the first asker's EDNS options */
	len = wire_strip_options(msg, len);
	if (scan(msg, len, q->qtype, &sc))
		return -EINVAL;
	int rcode = msg[3] & 0x0f;
	unsigned an = get_be16(msg + 6);
	uint32_t ttl = sc.min_ttl, cap;
	if (rcode == WIRE_NOERROR && an > 0 && (sc.has_qtype || !sc.soa)) {
		cap = c->conf.max_ttl; /* a CNAME chain without its end and no SOA too */
	} else if (rcode == WIRE_NXDOMAIN || rcode == WIRE_NOERROR) {
		if (!sc.soa)
			return -EINVAL; /* RFC 2308 section 5: no SOA, no negative caching */
		/* RFC 2308 section 5: min(SOA TTL, SOA MINIMUM); sc.min_ttl holds the SOA's
		 * TTL and a CNAME chain's, whose records must not outlive theirs */
		if (sc.soa_min < ttl)
			ttl = sc.soa_min;
		cap = c->conf.neg_max_ttl < ttl ? c->conf.neg_max_ttl : ttl;
	} else {
		return -EINVAL;
	}
	if (ttl > cap)
		ttl = cap;
	if (ttl == 0)
		return -EINVAL;
	return store(c, q, msg, len, sc.offs, sc.n, ttl, cap, now_ms);
}

void cache_prefetch_again(cache_t *c, const wire_query_t *q, uint64_t now_ms)
{
	shard_t *s;
	entry_t *e = find_locked(c, q, &s);
	if (e)
		e->prefetch_ms = now_ms + CACHE_PREFETCH_RETRY * 1000;
	pthread_mutex_unlock(&s->lock);
}

int cache_insert_servfail(cache_t *c, const uint8_t *pkt, size_t len, const wire_query_t *q,
                          uint64_t now_ms)
{
	shard_t *s;
	entry_t *e = find_locked(c, q, &s);
	if (e && now_ms < e->expire_ms + (uint64_t)c->conf.stale_ttl * 1000 && !is_servfail(e)) {
		e->recheck_ms = now_ms + CACHE_SERVFAIL_TTL * 1000;
		e->prefetch_ms = now_ms + CACHE_PREFETCH_RETRY * 1000; /* the refresh failed */
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	pthread_mutex_unlock(&s->lock);
	uint8_t buf[WIRE_HDR + WIRE_NAME_MAX + 4 + 64];
	size_t n = wire_error_response(pkt, len, WIRE_SERVFAIL, buf, sizeof(buf));
	if (!n)
		return -EINVAL;
	return store(c, q, buf, n, NULL, 0, CACHE_SERVFAIL_TTL, CACHE_SERVFAIL_TTL, now_ms);
}

void cache_stats(cache_t *c, cache_stats_t *out)
{
	memset(out, 0, sizeof(*out));
	out->bytes = c->fixed;
	for (unsigned i = 0; i < c->nshards; i++) {
		shard_t *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		out->hits += s->hits, out->misses += s->misses, out->stale += s->stale;
		out->servfail += s->servfail;
		out->prefetches += s->prefetches, out->inserts += s->inserts;
		out->evictions += s->evictions, out->entries += s->entries;
		out->bytes += s->bytes;
		pthread_mutex_unlock(&s->lock);
	}
}

/* ---- questions in flight ---------------------------------------------------------------- */

static bool same_key(const cache_waiter_t *a, const cache_waiter_t *b)
{
	return a->hash == b->hash && a->qtype == b->qtype && a->qclass == b->qclass &&
	       a->bits == b->bits && a->scope == b->scope && a->keylen == b->keylen &&
	       memcmp(a->key, b->key, a->keylen) == 0;
}

bool cache_flight_join(cache_t *c, const wire_query_t *q, cache_waiter_t *w)
{
	w->bits = query_bits(q);
	w->hash = key_hash(c, q, w->bits);
	w->qtype = q->qtype, w->qclass = q->qclass;
	w->scope = q->scope;
	w->keylen = (uint8_t)q->qname_len;
	memcpy(w->key, q->qname, q->qname_len);
	w->waiters = w->prev = w->next = NULL;
	cache_waiter_t **b = &c->flights[w->hash % FLIGHT_BUCKETS];
	pthread_mutex_lock(&c->flock);
	cache_waiter_t *o = *b;
	while (o && !same_key(o, w))
		o = o->next;
	w->joined = true;
	w->owner = o == NULL;
	if (o) { /* wait behind o */
		w->next = o->waiters;
		if (o->waiters)
			o->waiters->prev = w;
		o->waiters = w;
		w->prev = o; /* the first waiter's prev is its owner */
	} else {
		w->next = *b;
		if (*b)
			(*b)->prev = w;
		*b = w;
	}
	pthread_mutex_unlock(&c->flock);
	return w->owner;
}

void cache_flight_done(cache_t *c, cache_waiter_t *w, cache_wake_fn wake, void *ctx)
{
	pthread_mutex_lock(&c->flock);
	if (!w->joined || !w->owner) {
		pthread_mutex_unlock(&c->flock);
		return;
	}
	if (w->prev)
		w->prev->next = w->next;
	else
		c->flights[w->hash % FLIGHT_BUCKETS] = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->joined = false;
	for (cache_waiter_t *x = w->waiters, *next; x; x = next) {
		next = x->next;
		x->joined = false;
		x->next = x->prev = NULL;
		wake(x, ctx);
	}
	w->waiters = w->next = w->prev = NULL;
	pthread_mutex_unlock(&c->flock);
}

bool cache_flight_leave(cache_t *c, cache_waiter_t *w)
{
	pthread_mutex_lock(&c->flock);
	bool was = w->joined;
	if (was && !w->owner) {
		if (w->prev->waiters == w) /* the first: prev is the owner */
			w->prev->waiters = w->next;
		else
			w->prev->next = w->next;
		if (w->next)
			w->next->prev = w->prev;
		w->joined = false;
		w->next = w->prev = NULL;
	}
	pthread_mutex_unlock(&c->flock);
	return was;
}
