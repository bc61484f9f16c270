/* test_names.c — every name form of internald(7), NAMES, reserved words, malformed
 * names, and the label rules the importer shares. */
#include "testreg.h"

#include "names.h"

/* "a.b.c" -> wire form in buf; returns its length. */
static size_t wire(const char *text, uint8_t *buf)
{
	size_t n = 0;
	const char *p = text;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		buf[n++] = (uint8_t)l;
		memcpy(buf + n, p, l);
		n += l;
		p += l + (dot ? 1 : 0);
	}
	buf[n++] = 0;
	return n;
}

static names_t classify(const char *text)
{
	static uint8_t buf[300]; /* the labels point into it */
	names_t n;
	names_classify(buf, wire(text, buf), &n);
	return n;
}

static void assert_label(names_label_t l, const char *want)
{
	assert_int_equal(l.len, strlen(want));
	assert_memory_equal(l.p, want, l.len);
}

static void test_app_forms(void **s)
{
	(void)s;
	names_t n = classify("web.internal");
	assert_int_equal(n.form, NAME_APP);
	assert_int_equal(n.zone, ZONE_INTERNAL);
	assert_int_equal(n.apex_off, 4);
	assert_label(n.app, "web");
	assert_false(n.global);
	n = classify("global.web.internal");
	assert_int_equal(n.form, NAME_APP);
	assert_true(n.global);
	assert_label(n.app, "web");
	n = classify("ord.web.internal");
	assert_int_equal(n.form, NAME_REGION);
	assert_label(n.sub, "ord");
	n = classify("worker.process.web.internal");
	assert_int_equal(n.form, NAME_GROUP);
	assert_label(n.sub, "worker");
	n = classify("148e1d0a2c5d89.vm.web.internal");
	assert_int_equal(n.form, NAME_VM);
	assert_label(n.sub, "148e1d0a2c5d89");
	n = classify("primary.role.kv._metadata.web.internal");
	assert_int_equal(n.form, NAME_META);
	assert_label(n.sub, "role");
	assert_label(n.val, "primary");
	assert_label(n.app, "web");
}

static void test_txt_forms(void **s)
{
	(void)s;
	assert_int_equal(classify("vms.web.internal").form, NAME_VMS);
	assert_int_equal(classify("regions.web.internal").form, NAME_REGIONS);
	assert_int_equal(classify("_apps.internal").form, NAME_APPS);
	assert_int_equal(classify("_peer.internal").form, NAME_PEERS);
	assert_int_equal(classify("_instances.internal").form, NAME_INSTANCES);
	names_t n = classify("laptop._peer.internal");
	assert_int_equal(n.form, NAME_PEER);
	assert_label(n.sub, "laptop");
}

static void test_nearest(void **s)
{
	(void)s;
	names_t n = classify("top2.nearest.of.web.internal");
	assert_int_equal(n.form, NAME_NEAREST);
	assert_int_equal(n.top, 2);
	assert_label(n.app, "web");
	assert_int_equal(classify("top123.nearest.of.web.internal").top, 123);
}

static void test_malformed_top_is_nx(void **s)
{
	(void)s;
	const char *bad[] = {
	        "top0.nearest.of.web.internal",          "top.nearest.of.web.internal",
	        "topx.nearest.of.web.internal",          "top01.nearest.of.web.internal",
	        "top-1.nearest.of.web.internal",         "top1x.nearest.of.web.internal",
	        "top9999999999.nearest.of.web.internal", "two.nearest.of.web.internal"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(classify(bad[i]).form, NAME_NX);
}

static void test_reserved_words_win_over_regions(void **s)
{
	(void)s;
	/* an app may be called vms or global: the last label is always the app */
	names_t n = classify("vms.internal");
	assert_int_equal(n.form, NAME_APP);
	assert_label(n.app, "vms");
	n = classify("global.global.internal");
	assert_int_equal(n.form, NAME_APP);
	assert_label(n.app, "global");
	n = classify("vms.vms.internal");
	assert_int_equal(n.form, NAME_VMS);
	assert_label(n.app, "vms");
	assert_int_equal(classify("regions.nearest.internal").form, NAME_REGIONS);
}

static void test_empty_non_terminals(void **s)
{
	(void)s;
	const char *ents[] = {"vm.web.internal", "process.web.internal", "of.web.internal",
	                      "nearest.of.web.internal"};
	for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
		names_t n = classify(ents[i]);
		assert_int_equal(n.form, NAME_ENT);
		assert_label(n.app, "web");
	}
	/* these exist only while a queryable pair / a Machine does: their own forms */
	assert_int_equal(classify("_metadata.web.internal").form, NAME_META_ENT);
	assert_int_equal(classify("kv._metadata.web.internal").form, NAME_META_ENT);
	/* all.vms.<app> is a child of vms.<app>: all.<app> only looks like an ancestor */
	assert_int_equal(classify("all.web.internal").form, NAME_NX);
}

static void test_healthy_before_every_aaaa_form(void **s)
{
	(void)s;
	static const struct {
		const char *name;
		names_form_t form;
	} cases[] = {
	        {"healthy.web.internal", NAME_APP},
	        {"healthy.global.web.internal", NAME_APP},
	        {"healthy.ord.web.internal", NAME_REGION},
	        {"healthy.worker.process.web.internal", NAME_GROUP},
	        {"healthy.5683d33be74948.vm.web.internal", NAME_VM},
	        {"healthy.top2.nearest.of.web.internal", NAME_NEAREST},
	        {"healthy.gold.tier.kv._metadata.web.internal", NAME_META},
	        {"healthy.tier.kv._metadata.web.internal", NAME_META_KEY},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		names_t n = classify(cases[i].name);
		assert_int_equal(n.form, cases[i].form);
		assert_true(n.healthy);
		assert_label(n.app, "web");
		n = classify(cases[i].name + 8); /* the form without it */
		assert_int_equal(n.form, cases[i].form);
		assert_false(n.healthy);
	}
	assert_label(classify("healthy.ord.web.internal").sub, "ord");
	assert_label(classify("healthy.gold.tier.kv._metadata.web.internal").val, "gold");
	/* no healthy. before a TXT form, a non-terminal or itself; an app may not be one */
	const char *nx[] = {"healthy.vms.web.internal",
	                    "healthy.regions.web.internal",
	                    "healthy.vm.web.internal",
	                    "healthy.all.vms.web.internal",
	                    "healthy.healthy.web.internal",
	                    "healthy._apps.internal",
	                    "healthy.x.5683d33be74948.vm.web.internal"};
	for (size_t i = 0; i < sizeof(nx) / sizeof(nx[0]); i++)
		assert_int_equal(classify(nx[i]).form, NAME_NX);
	names_t n = classify("healthy.internal"); /* the last label is always the app */
	assert_int_equal(n.form, NAME_APP);
	assert_false(n.healthy);
}

static void test_all_forms_and_the_metadata_key(void **s)
{
	(void)s;
	names_t n = classify("all.vms.web.internal");
	assert_int_equal(n.form, NAME_ALL_VMS);
	assert_label(n.app, "web");
	n = classify("all.regions.web.internal");
	assert_int_equal(n.form, NAME_ALL_REGIONS);
	assert_label(n.app, "web");
	assert_int_equal(classify("all._instances.internal").form, NAME_ALL_INSTANCES);
	assert_int_equal(classify("x._instances.internal").form, NAME_NX);
	assert_int_equal(classify("all._apps.internal").form, NAME_NX);
	n = classify("fly_process_group.kv._metadata.web.internal");
	assert_int_equal(n.form, NAME_META_KEY);
	assert_label(n.sub, "fly_process_group");
}

static void test_reserved_and_meta_labels(void **s)
{
	(void)s;
	const char *words[] = {"global", "vms", "regions",   "process", "vm",     "nearest",
	                       "of",     "kv",  "_metadata", "all",     "healthy"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		assert_true(names_reserved(words[i], strlen(words[i])));
	assert_false(names_reserved("ord", 3));
	assert_false(names_reserved("alls", 4));
	assert_true(names_app_reserved("healthy", 7));
	assert_false(names_app_reserved("web", 3));
	assert_true(names_meta_label("fly_process_group", 17));
	assert_true(names_meta_label("01HZ", 4));
	assert_false(names_meta_label("v1.2.3", 6));
	assert_false(names_meta_label("", 0));
	assert_true(names_peer_hidden("interactive-7f3a", 16));
	assert_false(names_peer_hidden("interactive", 11));
	assert_false(names_peer_hidden("laptop", 6));
}

static void test_too_deep_or_unknown_is_nx(void **s)
{
	(void)s;
	const char *nx[] = {"a.b.web.internal", "x.vms.web.internal", "a.b.c.d.e.f.web.internal",
	                    "x._apps.internal", "a.b._peer.internal", "x._instances.internal",
	                    "a.b.web.flycast"};
	for (size_t i = 0; i < sizeof(nx) / sizeof(nx[0]); i++)
		assert_int_equal(classify(nx[i]).form, NAME_NX);
}

static void test_apexes(void **s)
{
	(void)s;
	names_t n = classify("internal");
	assert_int_equal(n.form, NAME_APEX);
	assert_int_equal(n.apex_off, 0);
	n = classify("flycast");
	assert_int_equal(n.form, NAME_APEX);
	assert_int_equal(n.zone, ZONE_FLYCAST);
	n = classify("a.a.d.f.ip6.arpa");
	assert_int_equal(n.form, NAME_APEX);
	assert_int_equal(n.zone, ZONE_REVERSE);
}

static void test_flycast(void **s)
{
	(void)s;
	names_t n = classify("web.flycast");
	assert_int_equal(n.form, NAME_FLYCAST);
	assert_int_equal(n.zone, ZONE_FLYCAST);
	assert_label(n.app, "web");
}

static void test_reverse_names(void **s)
{
	(void)s;
	/* fdaa:0:18:a7b:d6b:0:a:2 */
	names_t n = classify(
	        "2.0.0.0.a.0.0.0.0.0.0.0.b.6.d.0.b.7.a.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa");
	assert_int_equal(n.form, NAME_PTR);
	const uint8_t want[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0x0a, 0x7b,
	                          0x0d, 0x6b, 0, 0, 0, 0x0a, 0,    0x02};
	assert_memory_equal(n.addr, want, 16);
	/* a shorter name is a prefix: fdaa:0:18:0 (13 nibbles) */
	n = classify("0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa");
	assert_int_equal(n.form, NAME_PTR_ENT);
	assert_int_equal(n.nibbles, 13);
	const uint8_t pre[16] = {0xfd, 0xaa, 0, 0, 0, 0x18};
	assert_memory_equal(n.addr, pre, 16);
	assert_int_equal(classify("f.a.a.d.f.ip6.arpa").nibbles, 5);
	assert_int_equal(classify("f.a.a.d.f.ip6.arpa").addr[2], 0xf0);
	/* past 32 nibbles, or a label that is not one nibble: no name */
	assert_int_equal(classify("0.2.0.0.0.a.0.0.0.0.0.0.0.b.6.d.0.b.7.a.0.8.1.0.0.0.0.0.0.a.a.d."
	                          "f.ip6.arpa")
	                         .form,
	                 NAME_NX);
	assert_int_equal(classify("00.a.a.d.f.ip6.arpa").form, NAME_NX);
	assert_int_equal(
	        classify("z.0.0.0.a.0.0.0.0.0.0.0.b.6.d.0.b.7.a.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa")
	                .form,
	        NAME_NX);
	/* outside fdaa::/16: not ours */
	assert_int_equal(
	        classify("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa")
	                .form,
	        NAME_OUTSIDE);
	assert_int_equal(classify("d.f.ip6.arpa").form, NAME_OUTSIDE);
}

static void test_other_names_are_outside(void **s)
{
	(void)s;
	assert_int_equal(classify("example.com").form, NAME_OUTSIDE);
	assert_int_equal(classify("internal.example.com").form, NAME_OUTSIDE);
	assert_int_equal(classify("").form, NAME_OUTSIDE);
	uint8_t bad[] = {5, 'a', 'b', 0};
	names_t n;
	names_classify(bad, sizeof(bad), &n); /* a label running past the end */
	assert_int_equal(n.form, NAME_OUTSIDE);
}

static void test_label_rules(void **s)
{
	(void)s;
	assert_true(names_label_valid("web", 3));
	assert_true(names_label_valid("1password", 9)); /* RFC 1123 leading digit */
	assert_true(names_label_valid("a-b", 3));
	assert_false(names_label_valid("", 0));
	assert_false(names_label_valid("-a", 2));
	assert_false(names_label_valid("a-", 2));
	assert_false(names_label_valid("a_b", 3));
	assert_false(names_label_valid("Web", 3));
	assert_false(names_label_valid("a.b", 3));
	char l64[65];
	memset(l64, 'a', 64), l64[64] = 0;
	assert_true(names_label_valid(l64, 63));
	assert_false(names_label_valid(l64, 64));
	assert_true(names_machine_id("148e1d0a2c5d89", 14));
	assert_false(names_machine_id("148e1d0a2c5d8", 13));
	assert_false(names_machine_id("148e1d0a2c5d8g", 14));
	assert_false(names_machine_id("148E1D0A2C5D89", 14));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_app_forms),
	        cmocka_unit_test(test_txt_forms),
	        cmocka_unit_test(test_nearest),
	        cmocka_unit_test(test_malformed_top_is_nx),
	        cmocka_unit_test(test_reserved_words_win_over_regions),
	        cmocka_unit_test(test_empty_non_terminals),
	        cmocka_unit_test(test_too_deep_or_unknown_is_nx),
	        cmocka_unit_test(test_apexes),
	        cmocka_unit_test(test_flycast),
	        cmocka_unit_test(test_reverse_names),
	        cmocka_unit_test(test_other_names_are_outside),
	        cmocka_unit_test(test_label_rules),
	        cmocka_unit_test(test_all_forms_and_the_metadata_key),
	        cmocka_unit_test(test_reserved_and_meta_labels),
	        cmocka_unit_test(test_healthy_before_every_aaaa_form),
	};
	return cmocka_run_group_tests_name("names", tests, NULL, NULL);
}
