/*
 * cache.c — a fixed table of answers, one slot per key hash (see cache.h).
 */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
	uint64_t snapshot;
	uint64_t hash;
	uint32_t net;
	uint16_t key_len, resp_len;
	uint16_t shuffle_at, shuffle_n;
	uint8_t used, tcp, hit, pad_;
	uint8_t data[CACHE_ROOM]; /* key, then answer */
} slot_t;

_Static_assert(sizeof(slot_t) == CACHE_SLOT, "a slot is CACHE_SLOT bytes");

struct cache {
	slot_t *slots;
	size_t mask;
	uint64_t seed;
	cache_stats_t st;
};

cache_t *cache_new(size_t entries, uint64_t seed)
{
	if (entries == 0 || entries > ((size_t)1 << 24))
		return NULL;
	size_t n = 1;
	while (n < entries)
		n <<= 1;
	cache_t *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->slots = calloc(n, sizeof(*c->slots)); /* pages are touched as slots fill */
	if (!c->slots) {
		free(c);
		return NULL;
	}
	c->mask = n - 1;
	c->seed = seed;
	return c;
}

void cache_free(cache_t *c)
{
	if (!c)
		return;
	free(c->slots);
	free(c);
}

static uint64_t mix(uint64_t h, uint64_t w)
{
	h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

static uint64_t hash(const cache_t *c, const cache_key_t *k)
{
	uint64_t h = mix(c->seed, k->snapshot);
	h = mix(h, (uint64_t)k->net << 1 | k->tcp);
	size_t i = 0;
	for (; i + 8 <= k->len; i += 8) {
		uint64_t w;
		memcpy(&w, k->bytes + i, 8);
		h = mix(h, w);
	}
	uint64_t tail = k->len;
	for (; i < k->len; i++)
		tail = tail << 8 | k->bytes[i];
	h = mix(h, tail);
	h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL; /* MurmurHash3's finaliser: the slot */
	h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ULL; /* index takes the low bits */
	return h ^ (h >> 33);
}

static bool same(const slot_t *s, uint64_t h, const cache_key_t *k)
{
	return s->used && s->hash == h && s->snapshot == k->snapshot && s->net == k->net &&
	       s->tcp == k->tcp && s->key_len == k->len && !memcmp(s->data, k->bytes, k->len);
}

bool cache_get(cache_t *c, const cache_key_t *k, cache_ans_t *out)
{
	uint64_t h = hash(c, k);
	slot_t *s = &c->slots[h & c->mask];
	if (!same(s, h, k)) {
		c->st.misses++;
		return false;
	}
	s->hit = 1;
	c->st.hits++;
	*out = (cache_ans_t){
	        .resp = s->data + s->key_len,
	        .len = s->resp_len,
	        .shuffle_at = s->shuffle_at,
	        .shuffle_n = s->shuffle_n,
	};
	return true;
}

bool cache_put(cache_t *c, const cache_key_t *k, const cache_ans_t *a)
{
	if (k->len + a->len > CACHE_ROOM ||
	    (a->shuffle_n && (size_t)a->shuffle_at + 28u * a->shuffle_n > a->len))
		return false;
	uint64_t h = hash(c, k);
	slot_t *s = &c->slots[h & c->mask];
	if (s->used && s->hit && s->snapshot == k->snapshot && !same(s, h, k)) {
		s->hit = 0; /* a hot entry of this snapshot: its second chance */
		return false;
	}
	s->used = 1;
	s->hit = 0;
	s->hash = h;
	s->snapshot = k->snapshot;
	s->net = k->net;
	s->tcp = k->tcp;
	s->key_len = (uint16_t)k->len;
	s->resp_len = (uint16_t)a->len;
	s->shuffle_at = a->shuffle_at;
	s->shuffle_n = a->shuffle_n;
	memcpy(s->data, k->bytes, k->len);
	memcpy(s->data + k->len, a->resp, a->len);
	c->st.stores++;
	return true;
}

cache_stats_t cache_stats(const cache_t *c)
{
	return c->st;
}
