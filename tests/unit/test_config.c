/* test_config.c — options, the config file and their precedence; the region distance. */
#include "testreg.h"

#include <arpa/inet.h>

#include "config.h"
#include "regions.h"

static uint16_t port_of(const cfg_addr_t *a)
{
	return ntohs(a->ss.ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)&a->ss)->sin6_port
	                                         : ((const struct sockaddr_in *)&a->ss)->sin_port);
}

/* Writes text to dir/name; path receives its path. */
static void write_file(const char *dir, const char *name, const char *text, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void test_addresses(void **s)
{
	(void)s;
	cfg_addr_t a;
	assert_int_equal(config_parse_addr("[::1]:5353", 53, &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(port_of(&a), 5353);
	assert_int_equal(config_parse_addr("127.0.0.1:5353", 53, &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(port_of(&a), 5353);
	assert_int_equal(config_parse_addr("fdaa::3", 53, &a), 0);
	assert_int_equal(port_of(&a), 53);
	assert_int_equal(config_parse_addr("10.0.0.1", 53, &a), 0);
	assert_int_equal(port_of(&a), 53);
	assert_int_equal(config_parse_addr("[::1]", 53, &a), 0);
	assert_int_equal(config_parse_addr("[::1]:99999", 53, &a), -EINVAL);
	assert_int_equal(config_parse_addr("[::1", 53, &a), -EINVAL);
	assert_int_equal(config_parse_addr("[10.0.0.1]:53", 53, &a), -EINVAL);
	assert_int_equal(config_parse_addr("host:53", 53, &a), -EINVAL);
}

static cfg_problems_t probs; /* the last parse's */

/* Parses argv over the defaults; err (CFG_ERR_MAX) receives every problem, a line each. */
static int parse(config_t *c, char **argv, char *err)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	config_defaults(c);
	int rc = config_parse_args(c, argc, argv, &probs);
	size_t n = 0;
	err[0] = '\0';
	for (unsigned i = 0; i < probs.n && i < CFG_PROBLEMS_MAX && n < CFG_ERR_MAX; i++)
		n += (size_t)snprintf(err + n, CFG_ERR_MAX - n, "%s\n", probs.msg[i]);
	return rc;
}

/* Parses a file of text alone (-c FILE); the problems are in probs. */
static int parse_text(config_t *c, const char *text)
{
	char *dir = tmp_new(), path[512], err[CFG_ERR_MAX];
	write_file(dir, "internald.conf", text, path, sizeof(path));
	char *argv[] = {"internald", "-c", path, NULL};
	int rc = parse(c, argv, err);
	/* messages name the file as given: keep only its base name for the tests */
	for (unsigned i = 0; i < probs.n && i < CFG_PROBLEMS_MAX; i++) {
		char *at = strstr(probs.msg[i], "internald.conf");
		if (at)
			memmove(probs.msg[i], at, strlen(at) + 1);
	}
	tmp_free(dir);
	return rc;
}

static void test_defaults(void **s)
{
	(void)s;
	config_t c;
	char err[CFG_ERR_MAX];
	char *argv[] = {"internald", NULL};
	assert_int_equal(parse(&c, argv, err), 0);
	assert_string_equal(c.db, "/var/lib/internald");
	assert_int_equal(c.nlisten, 1);
	assert_string_equal(c.listen[0].text, "[fdaa::3]:53");
	assert_int_equal(c.ttl, 5);
	assert_int_equal(c.acl.nallow, 3);
}

static void test_file_then_command_line(void **s)
{
	(void)s;
	char *dir = tmp_new(), path[512], err[CFG_ERR_MAX];
	write_file(dir, "internald.conf",
	           "# comment\ndb = /srv/reg\nlisten = [::1]:1\nlisten = 127.0.0.1:2\nttl = 30\n"
	           "upstream = [::1]:5300   # trailing comment\nnsid = host-1\n",
	           path, sizeof(path));
	config_t c;
	char *argv[] = {"internald", "-c", path, "--listen", "[::1]:3", "--ttl=7", NULL};
	assert_int_equal(parse(&c, argv, err), 0);
	assert_string_equal(c.db, "/srv/reg");
	assert_int_equal(c.nlisten, 1); /* the command line's list replaces the file's */
	assert_int_equal(port_of(&c.listen[0]), 3);
	assert_int_equal(c.ttl, 7);
	assert_int_equal(c.nupstream, 1);
	assert_string_equal(c.nsid, "host-1");
	tmp_free(dir);
}

static void test_errors_name_the_option_or_line(void **s)
{
	(void)s;
	config_t c;
	char err[CFG_ERR_MAX];
	char *a1[] = {"internald", "--workers", "0", NULL};
	assert_int_equal(parse(&c, a1, err), -EINVAL);
	assert_non_null(strstr(err, "--workers 0"));
	char *a2[] = {"internald", "--colour", "red", NULL};
	assert_int_equal(parse(&c, a2, err), -EINVAL);
	assert_non_null(strstr(err, "unknown option '--colour'"));
	assert_true(probs.usage);
	char *a3[] = {"internald", "--listen", "nowhere", NULL};
	assert_int_equal(parse(&c, a3, err), -EINVAL);
	char *dir = tmp_new(), path[512];
	write_file(dir, "bad.conf", "ttl = 5\nthis is not a setting\n", path, sizeof(path));
	char *a4[] = {"internald", "-c", path, NULL};
	assert_int_equal(parse(&c, a4, err), -EINVAL);
	assert_non_null(strstr(err, "bad.conf:2: this is not a setting: want key = value"));
	assert_false(probs.usage); /* a bad value is no usage error: no usage printed */
	tmp_free(dir);
}

/* A line is a line however long: a long comment is not cut into a second "line" whose
 * tail would be read as a setting. */
static void test_a_long_line_is_one_line(void **s)
{
	(void)s;
	static char text[4096];
	size_t n = (size_t)snprintf(text, sizeof(text), "# ");
	while (n < 1100)
		text[n++] = 'x';
	snprintf(text + n, sizeof(text) - n, " ttl = 7\nttl = 9\n");
	char *dir = tmp_new(), path[512], err[CFG_ERR_MAX];
	write_file(dir, "long.conf", text, path, sizeof(path));
	config_t c;
	char *argv[] = {"internald", "-c", path, NULL};
	assert_int_equal(parse(&c, argv, err), 0);
	assert_int_equal(c.ttl, 9); /* the ttl inside the comment was not applied */
	tmp_free(dir);
}

/* Each upstream has its own counters: the same one twice is refused. */
static void test_an_upstream_given_twice_is_refused(void **s)
{
	(void)s;
	config_t c;
	char err[CFG_ERR_MAX];
	char *argv[] = {"internald", "--upstream", "127.0.0.1:5399", "--upstream",
	                "[::1]:53",  "--upstream", "127.0.0.1:5399", NULL};
	assert_int_equal(parse(&c, argv, err), -EINVAL);
	assert_non_null(strstr(err, "given twice"));
	char *ok[] = {"internald",  "--upstream",     "127.0.0.1:5399",
	              "--upstream", "127.0.0.1:5398", NULL};
	assert_int_equal(parse(&c, ok, err), 0);
	assert_int_equal(c.nupstream, 2);
}

static void test_resolv_conf_skips_ourselves(void **s)
{
	(void)s;
	char *dir = tmp_new(), path[512], err[CFG_ERR_MAX];
	write_file(dir, "resolv.conf",
	           "search example\nnameserver fdaa::3\nnameserver 192.0.2.53\nnameserver "
	           "fe80::1%eth0\n",
	           path, sizeof(path));
	config_t c;
	char *argv[] = {"internald", NULL};
	assert_int_equal(parse(&c, argv, err), 0);
	assert_int_equal(config_upstreams_from_resolv(&c, path), 2);
	assert_int_equal(c.upstream[0].ss.ss_family, AF_INET);
	assert_int_equal(c.upstream[1].ss.ss_family, AF_INET6);
	tmp_free(dir);
}

static void test_regions_option_is_gone_with_a_pointer(void **s)
{
	(void)s;
	config_t c;
	char err[CFG_ERR_MAX];
	char *argv[] = {"internald", "--regions", "zones/regions.tsv", NULL};
	assert_int_not_equal(parse(&c, argv, err), 0);
	assert_non_null(strstr(err, "regions.jsonl"));
}

static void test_distance(void **s)
{
	(void)s;
	/* O'Hare to Dulles is about 950 km; Chicago to Sydney more than 14000 */
	double d = regions_km(41.9786, -87.9048, 38.9531, -77.4565);
	assert_true(d > 900 && d < 1000);
	assert_true(regions_km(41.9786, -87.9048, -33.9399, 151.1753) > 14000);
	assert_true(regions_km(41.9786, -87.9048, 41.9786, -87.9048) < 1e-6);
}

static void test_cache_options(void **s)
{
	(void)s;
	config_t c;
	char err[CFG_ERR_MAX];
	char *a0[] = {"internald", NULL};
	assert_int_equal(parse(&c, a0, err), 0);
	assert_int_equal(c.cache_size, 64u << 20);
	assert_int_equal(c.cache_max_ttl, 86400);
	assert_int_equal(c.cache_neg_max_ttl, 3600);
	assert_int_equal(c.serve_stale, 86400);
	assert_int_equal(c.client_timer_ms, 1800);
	char *a1[] = {"internald", "--cache-size",
	              "1G",        "--cache-max-ttl",
	              "600",       "--serve-stale",
	              "0",         "--client-timer",
	              "500",       "--cache-negative-max-ttl",
	              "60",        NULL};
	assert_int_equal(parse(&c, a1, err), 0);
	assert_int_equal(c.cache_size, 1u << 30);
	assert_int_equal(c.cache_max_ttl, 600);
	assert_int_equal(c.cache_neg_max_ttl, 60);
	assert_int_equal(c.serve_stale, 0);
	assert_int_equal(c.client_timer_ms, 500);
	char *a2[] = {"internald", "--cache-size", "0", NULL};
	assert_int_equal(parse(&c, a2, err), 0);
	assert_int_equal(c.cache_size, 0);
	char *a3[] = {"internald", "--cache-size", "300000", NULL};
	assert_int_equal(parse(&c, a3, err), 0);
	assert_int_equal(c.cache_size, 300000);
	const char *bad[] = {"100K", "12X", "1MB", "-1", "", "5000G"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *a4[] = {"internald", "--cache-size", (char *)bad[i], NULL};
		assert_int_equal(parse(&c, a4, err), -EINVAL);
		assert_non_null(strstr(err, "--cache-size"));
	}
}

/* Ten bad lines, ten problems: each names the file, the line, the key, the value and
 * what is allowed; parsing goes on after the first. */
static void test_every_problem_is_reported_with_key_value_and_range(void **s)
{
	(void)s;
	config_t c;
	assert_int_equal(parse_text(&c, "ttl = 999999\n"
	                                "workers = 0\n"
	                                "colour = red\n"
	                                "db =\n"
	                                "listen = ::1:5353\n"
	                                "log-level = loud\n"
	                                "ttl = 30\n"
	                                "ttl = 40\n"
	                                "cache-size = 1MB\n"
	                                "dnstap = file.sock\n"
	                                "upstream = [::1]:99999\n"),
	                 -EINVAL);
	const char *want[] = {
	        "internald.conf:1: ttl = 999999: want 0..86400",
	        "internald.conf:2: workers = 0: want 1..256",
	        "internald.conf:3: colour = red: unknown key; want one of internald.conf(5)",
	        "internald.conf:4: db = \"\": empty; want a directory",
	        "internald.conf:5: listen = ::1:5353: want [v6]:port: write [::1]:5353 for a port, "
	        "[::1:5353] for the address",
	        "internald.conf:6: log-level = loud: want error, warn, info or debug",
	        "internald.conf:8: ttl = 40: ttl is set on line 7 already; want it once",
	        "internald.conf:9: cache-size = 1MB: want bytes (a K, M or G suffix), 0 (no cache) "
	        "or at least 256K",
	        "internald.conf:10: dnstap = file.sock: want unix:PATH (the collector's socket)",
	        "internald.conf:11: upstream = [::1]:99999: want [v6]:port, v4:port or an address "
	        "(port 53)",
	};
	assert_int_equal(probs.n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_string_equal(probs.msg[i], want[i]);
	assert_false(probs.usage);
}

/* internald.conf(5): '#' outside quotes starts a comment; a quoted value keeps it, and
 * the quotes are not part of the value. */
static void test_quotes_keep_a_hash_and_are_not_the_value(void **s)
{
	(void)s;
	config_t c;
	assert_int_equal(parse_text(&c, "nsid = \"host #1\"   # the first\n"
	                                "  region = ord# a comment right after\n"
	                                "default-org = \"de\\\"mo\\\\\"\n"),
	                 0);
	assert_string_equal(c.nsid, "host #1");
	assert_string_equal(c.region, "ord");
	assert_string_equal(c.default_org, "de\"mo\\");
	assert_int_equal(parse_text(&c, "nsid = \"open\n"), -EINVAL);
	assert_non_null(strstr(probs.msg[0], "internald.conf:1: nsid = \"open: the quote is not"));
	assert_int_equal(parse_text(&c, "nsid = \"a\" b\n"), -EINVAL);
	assert_non_null(strstr(probs.msg[0], "'b' after the closing quote"));
	assert_int_equal(parse_text(&c, "nsid = \"\"\n"), -EINVAL); /* empty, quoted or not */
	assert_non_null(strstr(probs.msg[0], "nsid = \"\": empty"));
}

/* "::1:5353" could be port 5353 of ::1 or the address ::0.1.83.83: brackets say which. */
static void test_a_port_on_a_bare_v6_address_is_refused(void **s)
{
	(void)s;
	config_t c;
	char err[CFG_ERR_MAX];
	char *a1[] = {"internald", "--listen", "::1:5353", NULL};
	assert_int_equal(parse(&c, a1, err), -EINVAL);
	assert_non_null(strstr(err, "--listen ::1:5353: want [v6]:port: write [::1]:5353"));
	char *a2[] = {"internald",
	              "--listen",
	              "fdaa::3",
	              "--listen",
	              "[::1:5353]",
	              "--upstream",
	              "2001:db8:0:0:0:0:1:53",
	              "--metrics",
	              "[::1]:9",
	              NULL};
	assert_int_equal(parse(&c, a2, err), 0);
	assert_int_equal(port_of(&c.listen[0]), 53);
	assert_int_equal(port_of(&c.listen[1]), 53);
	char *a3[] = {"internald", "--metrics", "fe80::1:9153", NULL};
	assert_int_equal(parse(&c, a3, err), -EINVAL);
}

/* getopt_long: --key=value and --key value alike; only a usage error is one. */
static void test_long_options_take_both_forms(void **s)
{
	(void)s;
	config_t c;
	char err[CFG_ERR_MAX];
	char *a1[] = {"internald", "--ttl=7", "--nsid", "n-1", "--workers=2", NULL};
	assert_int_equal(parse(&c, a1, err), 0);
	assert_int_equal(c.ttl, 7);
	assert_string_equal(c.nsid, "n-1");
	assert_int_equal(c.workers, 2);
	char *a2[] = {"internald", "--ttl", NULL};
	assert_int_equal(parse(&c, a2, err), -EINVAL);
	assert_true(probs.usage);
	assert_non_null(strstr(err, "--ttl needs a value"));
	char *a3[] = {"internald", "--ttl=999999", NULL};
	assert_int_equal(parse(&c, a3, err), -EINVAL);
	assert_false(probs.usage);
	assert_string_equal(err, "--ttl 999999: want 0..86400\n");
	char *a4[] = {"internald", "--ttl", "5", "stray", NULL};
	assert_int_equal(parse(&c, a4, err), -EINVAL);
	assert_true(probs.usage);
	assert_non_null(strstr(err, "unexpected argument 'stray'"));
	char *a5[] = {"internald", "--ttl", "1", "--help", NULL};
	assert_int_equal(parse(&c, a5, err), CONFIG_HELP);
	char *a6[] = {"internald", "--version", NULL};
	assert_int_equal(parse(&c, a6, err), CONFIG_VERSION);
	char *a7[] = {"internald", "--check-config", "--ttl", "x", NULL};
	assert_int_equal(parse(&c, a7, err), -EINVAL);
	assert_true(c.check_only);
	char *a8[] = {"internald", "--db", "", NULL};
	assert_int_equal(parse(&c, a8, err), -EINVAL);
	assert_non_null(strstr(err, "--db \"\": empty"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_addresses),
	        cmocka_unit_test(test_defaults),
	        cmocka_unit_test(test_file_then_command_line),
	        cmocka_unit_test(test_errors_name_the_option_or_line),
	        cmocka_unit_test(test_resolv_conf_skips_ourselves),
	        cmocka_unit_test(test_regions_option_is_gone_with_a_pointer),
	        cmocka_unit_test(test_distance),
	        cmocka_unit_test(test_cache_options),
	        cmocka_unit_test(test_a_long_line_is_one_line),
	        cmocka_unit_test(test_an_upstream_given_twice_is_refused),
	        cmocka_unit_test(test_every_problem_is_reported_with_key_value_and_range),
	        cmocka_unit_test(test_quotes_keep_a_hash_and_are_not_the_value),
	        cmocka_unit_test(test_a_port_on_a_bare_v6_address_is_refused),
	        cmocka_unit_test(test_long_options_take_both_forms),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
