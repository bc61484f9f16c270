/*
 * cache — a worker's answers, so that a name asked again in the same registry snapshot
 * costs a copy instead of a registry read.
 *
 * An entry is keyed by everything its answer depends on: the registry snapshot (LMDB's
 * transaction id: any committed write makes every older entry stale), the querier's
 * org, the transport, and the query's bytes after its ID with the name lower-cased
 * (flags, EDNS and all). Fixed size and direct-mapped, allocated once; an entry that was
 * hit since it was stored gets a second chance before a colliding miss replaces it.
 * Pure: no sockets, no clock, no allocation after cache_new. One per worker: no locks.
 */
#ifndef INTERNALD_CACHE_H
#define INTERNALD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_SLOT 640 /* bytes per entry: a 512-byte answer, its query and the header */
#define CACHE_ROOM (CACHE_SLOT - 32) /* key + answer bytes an entry holds */

typedef struct cache cache_t;

typedef struct {
	uint64_t snapshot;
	uint32_t net;
	bool tcp;
	const uint8_t *bytes; /* the query from its flags on, name lower-cased */
	size_t len;
} cache_key_t;

typedef struct {
	const uint8_t *resp; /* the answer as stored (its ID and name case are the first asker's) */
	size_t len;
	uint16_t shuffle_at; /* AAAA records (28 bytes each) to shuffle on every use */
	uint16_t shuffle_n;
} cache_ans_t;

typedef struct {
	uint64_t hits, misses, stores;
} cache_stats_t;

/* entries: rounded up to a power of two (0: NULL, no cache). seed: of the slot hash. */
cache_t *cache_new(size_t entries, uint64_t seed);
void cache_free(cache_t *c);

/* The answer stored under k, valid until the next cache_put. */
bool cache_get(cache_t *c, const cache_key_t *k, cache_ans_t *out);

/* Stores a's bytes under k. false: it does not fit an entry, or the slot's entry was hit
 * since it was stored (it is kept, once). */
bool cache_put(cache_t *c, const cache_key_t *k, const cache_ans_t *a);

cache_stats_t cache_stats(const cache_t *c);

#endif
