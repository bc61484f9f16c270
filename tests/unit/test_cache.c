/* test_cache.c — the answer cache on its own: what a hit needs to match (snapshot, org,
 * transport, query bytes), what does not fit, the second chance of a hot entry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache.h"

static const uint8_t QUERY[] = "\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x08internal";
static const uint8_t ANSWER[] = "an answer of some bytes";

static cache_key_t key(uint64_t snapshot, uint32_t net, bool tcp)
{
	return (cache_key_t){snapshot, net, tcp, QUERY, sizeof(QUERY)};
}

static void put(cache_t *c, cache_key_t k, const void *resp, size_t len)
{
	assert_true(cache_put(c, &k, &(cache_ans_t){.resp = resp, .len = len}));
}

static void test_a_stored_answer_is_found_by_the_same_key_only(void **state)
{
	(void)state;
	cache_t *c = cache_new(64, 1);
	assert_non_null(c);
	cache_ans_t a;
	cache_key_t k = key(7, 0x18, false);
	assert_false(cache_get(c, &k, &a));
	put(c, k, ANSWER, sizeof(ANSWER));
	assert_true(cache_get(c, &k, &a));
	assert_int_equal(a.len, sizeof(ANSWER));
	assert_memory_equal(a.resp, ANSWER, sizeof(ANSWER));

	cache_key_t other[] = {key(8, 0x18, false), key(7, 0x19, false), key(7, 0x18, true)};
	for (size_t i = 0; i < 3; i++) /* a write, another org, the other transport */
		assert_false(cache_get(c, &other[i], &a));
	uint8_t q[sizeof(QUERY)];
	memcpy(q, QUERY, sizeof(q));
	q[0] = 0; /* another flag byte (RD clear) */
	cache_key_t k2 = {7, 0x18, false, q, sizeof(q)};
	assert_false(cache_get(c, &k2, &a));
	k2.len--; /* a prefix of the stored key */
	assert_false(cache_get(c, &k2, &a));

	cache_stats_t st = cache_stats(c);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 6);
	assert_int_equal(st.stores, 1);
	cache_free(c);
}

static void test_what_does_not_fit_is_not_stored(void **state)
{
	(void)state;
	cache_t *c = cache_new(1, 1);
	static uint8_t big[CACHE_ROOM];
	cache_key_t k = key(1, 1, true);
	assert_false(cache_put(c, &k, &(cache_ans_t){.resp = big, .len = CACHE_ROOM}));
	/* a shuffle range past the answer's end is refused, not stored */
	assert_false(cache_put(
	        c, &k, &(cache_ans_t){.resp = big, .len = 100, .shuffle_at = 50, .shuffle_n = 2}));
	assert_true(cache_put(c, &k,
	                      &(cache_ans_t){.resp = big,
	                                     .len = CACHE_ROOM - sizeof(QUERY),
	                                     .shuffle_at = 44,
	                                     .shuffle_n = 2}));
	cache_ans_t a;
	assert_true(cache_get(c, &k, &a));
	assert_int_equal(a.len, CACHE_ROOM - sizeof(QUERY));
	assert_int_equal(a.shuffle_at, 44);
	assert_int_equal(a.shuffle_n, 2);
	cache_free(c);
}

static void test_a_hit_entry_survives_one_colliding_miss(void **state)
{
	(void)state;
	cache_t *c = cache_new(1, 1); /* one slot: every key collides */
	cache_ans_t a;
	cache_key_t hot = key(3, 1, false), cold = key(3, 2, false), cold2 = key(3, 3, false);
	put(c, hot, "hot", 3);
	assert_true(cache_get(c, &hot, &a));
	assert_false(cache_put(c, &cold, &(cache_ans_t){.resp = (const uint8_t *)"c", .len = 1}));
	assert_true(cache_get(c, &hot, &a)); /* kept, and hit again */
	assert_false(cache_put(c, &cold, &(cache_ans_t){.resp = (const uint8_t *)"c", .len = 1}));
	put(c, cold2, "c2", 2); /* not hit since the last chance: replaced */
	assert_false(cache_get(c, &hot, &a));
	assert_true(cache_get(c, &cold2, &a));
	assert_memory_equal(a.resp, "c2", 2);
	/* an entry of an older snapshot never gets a second chance */
	cache_key_t next = key(4, 1, false);
	put(c, next, "new", 3);
	assert_true(cache_get(c, &next, &a));
	cache_free(c);
}

static void test_sizes(void **state)
{
	(void)state;
	assert_null(cache_new(0, 1));
	cache_t *c = cache_new(1000, 1); /* 1024 slots: 1000 distinct keys mostly fit */
	unsigned stored = 0, found = 0;
	for (unsigned i = 0; i < 1000; i++) {
		cache_key_t k = {1, 1, false, (const uint8_t *)&i, sizeof(i)};
		stored += cache_put(c, &k, &(cache_ans_t){.resp = (const uint8_t *)&i, .len = 4});
	}
	for (unsigned i = 0; i < 1000; i++) {
		cache_key_t k = {1, 1, false, (const uint8_t *)&i, sizeof(i)};
		cache_ans_t a;
		if (cache_get(c, &k, &a)) {
			assert_memory_equal(a.resp, &i, 4); /* never another key's answer */
			found++;
		}
	}
	assert_int_equal(stored, 1000);
	assert_true(found > 500 && found <= 1000);
	cache_free(c);
	cache_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_a_stored_answer_is_found_by_the_same_key_only),
	        cmocka_unit_test(test_what_does_not_fit_is_not_stored),
	        cmocka_unit_test(test_a_hit_entry_survives_one_colliding_miss),
	        cmocka_unit_test(test_sizes),
	};
	return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
