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

static int parse(config_t *c, char **argv, char *err)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	config_defaults(c);
	return config_parse_args(c, argc, argv, err);
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
	assert_non_null(strstr(err, "unknown option"));
	char *a3[] = {"internald", "--listen", "nowhere", NULL};
	assert_int_equal(parse(&c, a3, err), -EINVAL);
	char *dir = tmp_new(), path[512];
	write_file(dir, "bad.conf", "ttl = 5\nthis is not a setting\n", path, sizeof(path));
	char *a4[] = {"internald", "-c", path, NULL};
	assert_int_equal(parse(&c, a4, err), -EINVAL);
	assert_non_null(strstr(err, "bad.conf:2"));
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
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
