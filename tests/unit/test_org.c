/* test_org.c — which org a query belongs to (internald(7), ORGANISATIONS), and the address and
 * prefix parsers the importer and the config share. */
#include "testreg.h"

#include "org.h"

static void ip(const char *s, uint8_t out[16])
{
	assert_int_equal(org_parse_addr(s, out), 0);
}

static void v4(const char *s, uint8_t out[16])
{
	org_prefix_t p;
	assert_int_equal(org_parse_prefix(s, &p), 0);
	memcpy(out, p.addr, 16);
}

static org_acl_t acl(void)
{
	org_acl_t a = {.nallow = 0};
	org_acl_default(&a);
	return a;
}

static void test_6pn_source_is_its_own_org(void **s)
{
	(void)s;
	org_acl_t a = acl();
	uint8_t src[16], dst[16];
	uint32_t net = 0;
	ip("fdaa:0:18:a7b:d6b:0:a:2", src);
	ip("fdaa::3", dst);
	assert_int_equal(org_classify(&a, src, dst, true, 0x99, &net), ORG_OK);
	assert_int_equal(net, 0x18);
	ip("fdaa:0:18::3", dst); /* its own org's resolver address */
	assert_int_equal(org_classify(&a, src, dst, false, 0, &net), ORG_OK);
	assert_int_equal(net, 0x18);
}

static void test_other_orgs_resolver_address_is_refused(void **s)
{
	(void)s;
	org_acl_t a = acl();
	uint8_t src[16], dst[16];
	uint32_t net;
	ip("fdaa:0:18:a7b:d6b:0:a:2", src);
	ip("fdaa:0:19::3", dst);
	assert_int_equal(org_classify(&a, src, dst, true, 0x19, &net), ORG_OTHER_ORG);
	ip("fdaa:0:19::4", dst); /* not a resolver address: source decides */
	assert_int_equal(org_classify(&a, src, dst, true, 0x19, &net), ORG_OK);
	assert_int_equal(net, 0x18);
}

static void test_loopback_uses_default_org(void **s)
{
	(void)s;
	org_acl_t a = acl();
	uint8_t src[16], dst[16];
	uint32_t net = 0;
	ip("::1", src);
	ip("::1", dst);
	assert_int_equal(org_classify(&a, src, dst, true, 0x42, &net), ORG_OK);
	assert_int_equal(net, 0x42);
	assert_int_equal(org_classify(&a, src, dst, false, 0, &net), ORG_NONE);
	v4("127.0.0.1", src);
	assert_int_equal(org_classify(&a, src, dst, true, 0x42, &net), ORG_OK);
}

static void test_sources_outside_allow_are_refused(void **s)
{
	(void)s;
	org_acl_t a = acl();
	uint8_t src[16], dst[16];
	uint32_t net;
	ip("2001:db8::1", src);
	ip("::1", dst);
	assert_int_equal(org_classify(&a, src, dst, true, 0x42, &net), ORG_REFUSED);
	v4("10.1.2.3", src);
	assert_int_equal(org_classify(&a, src, dst, true, 0x42, &net), ORG_REFUSED);
	org_acl_t b = {.nallow = 1};
	assert_int_equal(org_parse_prefix("10.0.0.0/8", &b.allow[0]), 0);
	assert_int_equal(org_classify(&b, src, dst, true, 0x42, &net), ORG_OK);
	ip("fdaa:0:18::2", src); /* a custom list replaces the default one */
	assert_int_equal(org_classify(&b, src, dst, true, 0x42, &net), ORG_REFUSED);
}

static void test_parse_network(void **s)
{
	(void)s;
	uint32_t net;
	assert_int_equal(org_parse_network("fdaa:0:18::/48", &net), 0);
	assert_int_equal(net, 0x18);
	assert_int_equal(org_parse_network("fdaa:12:3456::/48", &net), 0);
	assert_int_equal(net, 0x00123456);
	assert_int_equal(org_parse_network("fdaa:0:18::", &net), -EINVAL);
	assert_int_equal(org_parse_network("fdaa:0:18::/64", &net), -EINVAL);
	assert_int_equal(org_parse_network("fdab:0:18::/48", &net), -EINVAL);
	assert_int_equal(org_parse_network("fdaa:0:18:1::/48", &net), -EINVAL);
	assert_int_equal(org_parse_network("nonsense/48", &net), -EINVAL);
	uint8_t p[16], want[16];
	org_prefix_of(0x18, p);
	ip("fdaa:0:18::", want);
	assert_memory_equal(p, want, 16);
}

static void test_parse_prefix(void **s)
{
	(void)s;
	org_prefix_t p;
	uint8_t a[16];
	assert_int_equal(org_parse_prefix("fdaa::/16", &p), 0);
	assert_int_equal(p.plen, 16);
	ip("fdaa:ffff::1", a);
	assert_true(org_prefix_contains(&p, a));
	ip("fdab::1", a);
	assert_false(org_prefix_contains(&p, a));
	assert_int_equal(org_parse_prefix("192.168.0.0/17", &p), 0);
	assert_int_equal(p.plen, 96 + 17);
	v4("192.168.127.1", a);
	assert_true(org_prefix_contains(&p, a));
	v4("192.168.128.1", a);
	assert_false(org_prefix_contains(&p, a));
	assert_int_equal(org_parse_prefix("::1", &p), 0);
	assert_int_equal(p.plen, 128);
	assert_int_equal(org_parse_prefix("::1/129", &p), -EINVAL);
	assert_int_equal(org_parse_prefix("1.2.3.4/33", &p), -EINVAL);
	assert_int_equal(org_parse_prefix("1.2.3.4/", &p), -EINVAL);
	assert_int_equal(org_parse_prefix("host", &p), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_6pn_source_is_its_own_org),
	        cmocka_unit_test(test_other_orgs_resolver_address_is_refused),
	        cmocka_unit_test(test_loopback_uses_default_org),
	        cmocka_unit_test(test_sources_outside_allow_are_refused),
	        cmocka_unit_test(test_parse_network),
	        cmocka_unit_test(test_parse_prefix),
	};
	return cmocka_run_group_tests_name("org", tests, NULL, NULL);
}
