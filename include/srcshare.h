/*
 * srcshare — how much of a shared table one source holds: TCP connections of the
 * process, forwarded queries in flight of a worker. Pure: no socket, no clock.
 *
 * A source is an address; an IPv6 address outside fdaa::/16 counts as its /64 (one host
 * picks addresses from its /64 at will), a 6PN address and an IPv4 address as
 * themselves. The counts live in a fixed array indexed by a keyed hash of the source
 * (the key random per table), so nothing allocates after srcshare_create and two sources
 * share a count only when their hashes collide (1 in SRCSHARE_SLOTS): a collision makes
 * a cap tighter for both, never looser.
 *
 * Thread-safe: counts are atomics (relaxed); take and give are one compare-and-swap loop
 * and one subtraction.
 */
#ifndef INTERNALD_SRCSHARE_H
#define INTERNALD_SRCSHARE_H

#include <stdbool.h>
#include <stdint.h>

#define SRCSHARE_SLOTS 65536

typedef struct srcshare srcshare_t;

/* Allocates *out (srcshare_free frees it). 0 or -ENOMEM. */
int srcshare_create(srcshare_t **out);
void srcshare_free(srcshare_t *t);

/* The slot of a source address (16 bytes, IPv4 as v4-mapped). */
uint32_t srcshare_slot(const srcshare_t *t, const uint8_t addr[16]);

/* One more for slot, unless it holds limit already: true when taken. */
bool srcshare_take(srcshare_t *t, uint32_t slot, unsigned limit);
/* One fewer for slot (after a take that returned true). */
void srcshare_give(srcshare_t *t, uint32_t slot);
/* What slot holds now. */
unsigned srcshare_count(const srcshare_t *t, uint32_t slot);

#endif
