/* test_srcshare.c — per-source counts (include/srcshare.h): what counts as one source,
 * and a cap that holds. */
#include "testreg.h"

#include "org.h"
#include "srcshare.h"

static uint32_t slot_of(srcshare_t *t, const char *addr)
{
	uint8_t a[16];
	assert_int_equal(org_parse_addr(addr, a), 0);
	return srcshare_slot(t, a);
}

static void test_an_ipv6_host_outside_6pn_is_its_slash_64(void **st)
{
	(void)st;
	srcshare_t *t;
	assert_int_equal(srcshare_create(&t), 0);
	assert_int_equal(slot_of(t, "2001:db8:1:2::1"), slot_of(t, "2001:db8:1:2:ffff::9"));
	assert_int_not_equal(slot_of(t, "2001:db8:1:2::1"), slot_of(t, "2001:db8:1:3::1"));
	/* a 6PN address is one Machine, an IPv4 address one host */
	assert_int_not_equal(slot_of(t, "fdaa:0:18:a7b:d6b:0:a:2"),
	                     slot_of(t, "fdaa:0:18:a7b:d6b:0:b:2"));
	assert_int_not_equal(slot_of(t, "::ffff:127.0.0.1"), slot_of(t, "::ffff:127.0.0.2"));
	srcshare_free(t);
}

static void test_a_source_holds_at_most_its_limit(void **st)
{
	(void)st;
	srcshare_t *t;
	assert_int_equal(srcshare_create(&t), 0);
	uint32_t a = slot_of(t, "::ffff:127.0.0.2"), b = slot_of(t, "::ffff:127.0.0.1");
	for (int i = 0; i < 8; i++)
		assert_true(srcshare_take(t, a, 8));
	assert_false(srcshare_take(t, a, 8));
	assert_true(srcshare_take(t, b, 8)); /* another source is not held back */
	srcshare_give(t, a);
	assert_int_equal(srcshare_count(t, a), 7);
	assert_true(srcshare_take(t, a, 8));
	srcshare_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_an_ipv6_host_outside_6pn_is_its_slash_64),
	        cmocka_unit_test(test_a_source_holds_at_most_its_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
