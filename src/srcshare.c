/*
 * srcshare.c — per-source counts of a shared table (include/srcshare.h). Pure; it must
 * never allocate after srcshare_create nor block.
 */
#include "srcshare.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct srcshare {
	uint64_t k0, k1; /* the hash key: a source cannot aim at another's slot */
	atomic_uint count[SRCSHARE_SLOTS];
};

int srcshare_create(srcshare_t **out)
{
	srcshare_t *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	uint64_t k[2] = {0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL};
	if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k))
		k[0] ^= (uint64_t)(uintptr_t)t; /* weaker, still per process */
	t->k0 = k[0], t->k1 = k[1];
	*out = t;
	return 0;
}

void srcshare_free(srcshare_t *t)
{
	free(t);
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 33);
}

uint32_t srcshare_slot(const srcshare_t *t, const uint8_t addr[16])
{
	static const uint8_t v4[12] = {[10] = 0xff, [11] = 0xff};
	bool whole = memcmp(addr, v4, 12) == 0 || (addr[0] == 0xfd && addr[1] == 0xaa);
	uint64_t hi, lo = 0;
	memcpy(&hi, addr, 8);
	if (whole)
		memcpy(&lo, addr + 8, 8); /* else the /64 */
	uint64_t h = mix(hi ^ t->k0);
	h = mix(h ^ lo ^ t->k1);
	return (uint32_t)(h % SRCSHARE_SLOTS);
}

bool srcshare_take(srcshare_t *t, uint32_t slot, unsigned limit)
{
	unsigned n = atomic_load_explicit(&t->count[slot], memory_order_relaxed);
	do
		if (n >= limit)
			return false;
	while (!atomic_compare_exchange_weak_explicit(&t->count[slot], &n, n + 1,
	                                              memory_order_relaxed, memory_order_relaxed));
	return true;
}

void srcshare_give(srcshare_t *t, uint32_t slot)
{
	atomic_fetch_sub_explicit(&t->count[slot], 1, memory_order_relaxed);
}

unsigned srcshare_count(const srcshare_t *t, uint32_t slot)
{
	return atomic_load_explicit(&((srcshare_t *)t)->count[slot], memory_order_relaxed);
}
