/*
 * cache — the answers of forwarded names, shared by every worker of the process
 * (internald(7), FORWARDING), and the table of questions in flight upstream.
 *
 * Pure: it stores and rewrites DNS messages in memory; it never touches a socket nor an
 * event loop, and it reads no clock (every call takes the time, in milliseconds of a
 * monotonic clock, from its caller). Thread-safe: the entries live in shards, each
 * behind its own mutex held only for a table walk and one copy; nothing on the lookup
 * path allocates.
 *
 * An entry is keyed by the lower-cased question name, type, class, three bits of the
 * query: EDNS present, DO, CD (a client without EDNS never gets an OPT record, a DO
 * answer carries signatures the other does not), and the query's scope (its org,
 * wire_query_t.scope): an org is answered only from what its own clients asked, so a
 * TTL counting down never tells it that another org looked the name up. It holds the upstream's
 * message as received and the offsets of its TTL fields, so an answer is one copy plus a rewrite of
 * the ID, RD/CD/RA, the question's letter case and each TTL, counted down.
 *
 * Bounded in bytes: max_bytes covers every byte the cache allocates (the shard tables
 * and each entry as malloc rounds it), and each shard evicts past its share with a CLOCK
 * (second chance): the oldest entry not used since the hand last passed goes first.
 */
#ifndef INTERNALD_CACHE_H
#define INTERNALD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define CACHE_STALE_TTL      30 /* the TTL of a stale answer (RFC 8767 section 4) */
#define CACHE_SERVFAIL_TTL   5  /* seconds a SERVFAIL (every upstream failed) is kept */
#define CACHE_PREFETCH_RETRY 5  /* seconds before a refresh not yet stored is asked again */
#define CACHE_MIN_BYTES      (256 * 1024)

typedef struct cache cache_t;

typedef struct {
	size_t max_bytes;     /* everything the cache allocates; >= CACHE_MIN_BYTES */
	uint32_t max_ttl;     /* seconds: the most a positive answer is kept */
	uint32_t neg_max_ttl; /* seconds: the most an NXDOMAIN/NODATA is kept */
	uint32_t stale_ttl;   /* seconds an expired answer may still be served; 0: never */
} cache_conf_t;

typedef struct {
	uint64_t hits;       /* answered fresh (SERVFAIL entries not included) */
	uint64_t servfail;   /* answered from a SERVFAIL entry (cache_insert_servfail) */
	uint64_t misses;     /* fresh lookups that found nothing usable */
	uint64_t stale;      /* answered from an expired entry, TTL 30 (every path) */
	uint64_t prefetches; /* hits that asked the caller to refresh the entry */
	uint64_t inserts;    /* answers stored */
	uint64_t evictions;  /* entries dropped to stay within max_bytes */
	uint64_t entries;    /* stored now */
	uint64_t bytes;      /* allocated now, the tables counted at their largest */
} cache_stats_t;

/*
 * Allocates *out (cache_free frees it). Returns 0, -EINVAL when conf->max_bytes is below
 * CACHE_MIN_BYTES, or -ENOMEM.
 */
int cache_create(cache_t **out, const cache_conf_t *conf);
void cache_free(cache_t *c);

enum cache_result {
	CACHE_MISS = 0,
	CACHE_HIT = 1,          /* a fresh answer was written */
	CACHE_HIT_PREFETCH = 2, /* a fresh answer in the last 10% of its TTL: refresh it in
	                           the background (returned once per stored answer; again
	                           CACHE_PREFETCH_RETRY s after cache_prefetch_again or a
	                           cache_insert_servfail of it) */
	CACHE_STALE = 3,        /* an expired answer was written with TTL 30 */
};

/*
 * Answers the client's query pkt (q: its parse, wire_parse_query() == WIRE_OK) from the
 * cache into out (cap bytes): the stored message made the client's (wire_answer_for: its
 * ID, RD, CD, AD rule and letter case, RA set) with every TTL counted down to now_ms (in
 * stale mode TTL 30); longer than max: header and question only, with TC. A SERVFAIL
 * entry is never stale: past its seconds it is dropped.
 * stale_ok: an expired entry no older than stale_ttl answers too (the client response
 * timer ran out). Without it, an expired entry answers stale only within
 * CACHE_SERVFAIL_TTL of a refresh that failed at every upstream (cache_insert_servfail),
 * so a dead upstream is not asked again for every query.
 * Returns a cache_result; *len is set for everything but CACHE_MISS. Never allocates.
 */
int cache_lookup(cache_t *c, const uint8_t *pkt, const wire_query_t *q, size_t max, uint64_t now_ms,
                 bool stale_ok, uint8_t *out, size_t cap, size_t *len);

/*
 * Stores an upstream's answer resp (len bytes) to q, its OPT record without options
 * (wire_strip_options): NOERROR with records of q's type, or a CNAME chain without SOA,
 * for the smallest TTL of its records (clamped by max_ttl); NXDOMAIN and NODATA, after a
 * CNAME chain too, for min(SOA TTL, SOA MINIMUM) of the SOA in its authority section
 * (RFC 2308) and no longer than the chain's records (clamped by neg_max_ttl). It
 * replaces an entry of the same key. Returns 0; -EINVAL when the message is not stored: not an
 * answer to q, malformed, TC set, another rcode (extended ones too), a negative answer
 * without SOA, a TTL of 0; -ENOSPC when it is larger than a quarter of a shard;
 * -ENOMEM.
 */
int cache_insert(cache_t *c, const wire_query_t *q, const uint8_t *resp, size_t len,
                 uint64_t now_ms);

/*
 * Every upstream failed for q (pkt, len: the client's query). An entry that exists (fresh,
 * or expired still within stale_ttl) stays; expired, it answers stale for
 * CACHE_SERVFAIL_TTL seconds even to fresh lookups, and a hit may ask for its refresh
 * again after CACHE_PREFETCH_RETRY seconds. Otherwise a SERVFAIL answer is stored for
 * CACHE_SERVFAIL_TTL seconds. Returns 0, or -ENOMEM / -ENOSPC / -EINVAL as cache_insert
 * does.
 */
int cache_insert_servfail(cache_t *c, const uint8_t *pkt, size_t len, const wire_query_t *q,
                          uint64_t now_ms);

/* The refresh that a CACHE_HIT_PREFETCH asked for could not start (the forwarder is
 * full): a hit may ask again CACHE_PREFETCH_RETRY seconds from now_ms. */
void cache_prefetch_again(cache_t *c, const wire_query_t *q, uint64_t now_ms);

/* Sums the shards' counters into *out (takes each shard's lock in turn). */
void cache_stats(cache_t *c, cache_stats_t *out);

/*
 * Questions in flight. A waiter is a node the caller embeds in its own per-query state
 * (no allocation); the cache links it while it waits. The first to join a key is its
 * owner: it asks upstream, and when it has its answer (or gave up) calls
 * cache_flight_done, which hands every other waiter of the key to wake() (called with
 * the table's lock held: wake must only queue, never call back into the flight table).
 */
typedef struct cache_waiter {
	struct cache_waiter *next, *prev, *waiters;
	uint64_t hash;
	uint16_t qtype, qclass;
	uint8_t bits, keylen;
	uint32_t scope;
	bool joined, owner;
	uint8_t key[WIRE_NAME_MAX];
	void *arg; /* the caller's, untouched */
} cache_waiter_t;

typedef void (*cache_wake_fn)(cache_waiter_t *w, void *ctx);

/* Joins w (arg set by the caller) to the questions in flight for q. Returns true when w
 * is the owner (ask upstream), false when it waits for an owner's cache_flight_done. */
bool cache_flight_join(cache_t *c, const wire_query_t *q, cache_waiter_t *w);
/* The owner w is done: each waiter goes to wake(waiter, ctx), then w leaves. */
void cache_flight_done(cache_t *c, cache_waiter_t *w, cache_wake_fn wake, void *ctx);
/* A waiter gives up (its timer, shutdown). Returns false when it was already handed to
 * wake (the caller then waits for that hand-over instead). An owner must use
 * cache_flight_done. */
bool cache_flight_leave(cache_t *c, cache_waiter_t *w);

#endif
