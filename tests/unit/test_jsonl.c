/* test_jsonl.c — the import format: every validation refuses the whole file with a
 * message naming file, line and field, and leaves the registry exactly as it was;
 * export -> import --replace -> export is the identity. */
#include <arpa/inet.h>

#include "testreg.h"

typedef struct {
	char *dir;
	reg_t *reg;
	char *before;
} fx_t;

static const char base[] = ORG_A MACHINE(
        "00000000000001", "alpha", "web", "ord", "fdaa:0:18:1:1:0:1:2", "started", "app",
        ",\"metadata\":{\"role\":\"primary\"}") "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":"
                                                "\"laptop\",\"ip\":\"fdaa:0:18:2::2\","
                                                "\"region\":\"ams\"}\n";

static int setup(void **state)
{
	fx_t *fx = calloc(1, sizeof(*fx));
	fx->reg = reg_fixture(&fx->dir, base);
	fx->before = export_str(fx->reg);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	fx_t *fx = *state;
	reg_close(fx->reg);
	tmp_free(fx->dir);
	free(fx->before);
	free(fx);
	return 0;
}

/* Imports text, expects a refusal whose message contains want, and an unchanged registry. */
static void refused(void **state, const char *text, const char *want)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	int rc = import_str(fx->reg, text, false, err);
	assert_int_not_equal(rc, 0);
	if (!strstr(err, want))
		fail_msg("error '%s' does not say '%s'", err, want);
	char *after = export_str(fx->reg);
	assert_string_equal(fx->before, after);
	free(after);
	reg_txn_t *t;
	assert_int_equal(reg_txn_begin(fx->reg, false, &t), 0);
	assert_int_equal(reg_generation(t), 2); /* the regions, then base */
	reg_txn_abort(t);
}

#define GOOD_M(id) MACHINE(id, "alpha", "api", "ord", "fdaa:0:18:1:1:0:9:2", "started", "app", "")

static void test_malformed_json_names_line(void **s)
{
	refused(s, GOOD_M("00000000000009") "{\"kind\":\"machine\",\n",
	        "test.jsonl:2: malformed JSON");
}
static void test_line_that_is_not_an_object(void **s)
{
	refused(s, "[1,2]\n", "test.jsonl:1: each line must be one JSON object");
}
static void test_missing_kind(void **s)
{
	refused(s, "{\"slug\":\"x\"}\n", "test.jsonl:1: field 'kind': missing");
}
static void test_unknown_kind(void **s)
{
	refused(s, "{\"kind\":\"vm\"}\n", "field 'kind': unknown kind 'vm'");
}
static void test_unknown_field(void **s)
{
	refused(s, "{\"kind\":\"org\",\"slug\":\"x\",\"network\":\"fdaa:0:20::/48\",\"color\":1}\n",
	        "field 'color': unknown field for kind 'org'");
}
static void test_app_not_a_label(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "my_app", "ord", "fdaa:0:18:1:1:0:9:2",
	                "started", "app", ""),
	        "field 'app': 'my_app' is not a DNS label");
}
static void test_label_too_long(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started",
	                "a234567890123456789012345678901234567890123456789012345678901234", ""),
	        "field 'process_group'");
}
static void test_region_with_trailing_hyphen(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord-", "fdaa:0:18:1:1:0:9:2", "started",
	                "app", ""),
	        "field 'region'");
}
static void test_machine_id_neither_hex_nor_label(void **s)
{
	refused(s,
	        MACHINE("bad id!", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started", "app",
	                ""),
	        "field 'id': 'bad id!' is neither 14 hex digits nor a DNS label");
}
static void test_private_ip_outside_org(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:19:1:1:0:9:2", "started",
	                "app", ""),
	        "field 'private_ip': fdaa:0:19:1:1:0:9:2 is outside org alpha's network "
	        "fdaa:0:18::/48");
}
static void test_private_ip_not_ipv6(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "10.0.0.1", "started", "app", ""),
	        "field 'private_ip': '10.0.0.1' is not an IPv6 address");
}
static void test_private_ip_outside_6pn(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "2001:db8::1", "started", "app",
	                ""),
	        "outside the 6PN range");
}
static void test_unknown_org(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "gamma", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started",
	                "app", ""),
	        "field 'org': unknown org 'gamma'");
}
static void test_duplicate_id_in_one_file(void **s)
{
	refused(s, GOOD_M("00000000000009") GOOD_M("00000000000009"),
	        "test.jsonl:2: field 'id': duplicate machine '00000000000009'");
}
static void test_duplicate_org_in_one_file(void **s)
{
	refused(s, ORG_B ORG_B, "test.jsonl:2: field 'slug': duplicate org 'beta'");
}
static void test_org_network_not_a_48(void **s)
{
	refused(s, "{\"kind\":\"org\",\"slug\":\"x\",\"network\":\"fdaa:0:20::/64\"}\n",
	        "field 'network': 'fdaa:0:20::/64' is not an fdaa:X:Y::/48 network");
}
static void test_org_network_taken(void **s)
{
	refused(s, "{\"kind\":\"org\",\"slug\":\"other\",\"network\":\"fdaa:0:18::/48\"}\n",
	        "field 'network': org 'other' or its network is already in the registry");
}
static void test_metadata_value_not_string(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started",
	                "app", ",\"metadata\":{\"n\":1}"),
	        "field 'metadata.n': must be a string");
}
static void test_metadata_value_with_control_character(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started",
	                "app", ",\"metadata\":{\"v\":\"a\\tb\"}"),
	        "field 'metadata.v': a value is at most 255 printable characters");
}
static void test_metadata_key_twice_ignoring_case(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started",
	                "app", ",\"metadata\":{\"Role\":\"a\",\"role\":\"b\"}"),
	        "field 'metadata.role': the key 'Role' is given twice");
}
static void test_machine_in_unknown_region(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "xyz", "fdaa:0:18:1:1:0:9:2", "started",
	                "app", ""),
	        "test.jsonl:1: field 'region': unknown region 'xyz'");
}
static void test_peer_in_unknown_region(void **s)
{
	refused(s,
	        ORG_B "{\"kind\":\"peer\",\"org\":\"beta\",\"name\":\"p\",\"ip\":"
	              "\"fdaa:0:19::2\",\"region\":\"nowhere\"}\n",
	        "test.jsonl:2: field 'region': unknown region 'nowhere'");
}
static void test_reserved_region_code(void **s)
{
	refused(s, "{\"kind\":\"region\",\"code\":\"vms\",\"name\":\"X\",\"lat\":1,\"lon\":2}\n",
	        "test.jsonl:1: field 'code': 'vms' is a reserved word");
}
static void test_reserved_process_group(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started",
	                "all", ""),
	        "field 'process_group': 'all' is a reserved word");
}
static void test_region_latitude_out_of_range(void **s)
{
	refused(s, "{\"kind\":\"region\",\"code\":\"zzz\",\"name\":\"X\",\"lat\":91,\"lon\":2}\n",
	        "test.jsonl:1: field 'lat': must be a number of degrees from -90 to 90");
}
static void test_dns_field_unknown_key(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started",
	                "app", ",\"dns\":{\"skip\":true}"),
	        "field 'dns': unknown field 'skip'");
}

#define REGION_LINE "{\"kind\":\"region\",\"code\":\"zzz\",\"name\":\"Z\",\"lat\":1,\"lon\":2}\n"
#define CHECKED(checks)                                                                            \
	MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started", "app",  \
	        ",\"checks\":" checks)

/* checks in the Machines API's shape: each bad one named by its index and field */
static void test_bad_checks_name_the_line_and_field(void **s)
{
	static const char *const cases[][2] = {
	        {"{\"name\":\"http\"}", "test.jsonl:2: field 'checks': must be an array"},
	        {"[{\"name\":\"http\",\"status\":\"passing\"},\"x\"]",
	         "test.jsonl:2: field 'checks[1]': must be an object"},
	        {"[{\"status\":\"passing\"}]", "test.jsonl:2: field 'checks[0].name': missing"},
	        {"[{\"name\":7,\"status\":\"passing\"}]",
	         "field 'checks[0].name': a check's name is 1-63 printable characters"},
	        {"[{\"name\":\"\",\"status\":\"passing\"}]",
	         "field 'checks[0].name': a check's name is 1-63"},
	        {"[{\"name\":\"http\"}]", "field 'checks[0].status': missing"},
	        {"[{\"name\":\"http\",\"status\":\"failing\"}]",
	         "field 'checks[0].status': must be \"passing\", \"warning\" or \"critical\""},
	        {"[{\"name\":\"http\",\"status\":\"Passing\"}]",
	         "field 'checks[0].status': must be"},
	        {"[{\"name\":\"http\",\"status\":\"passing\"},{\"name\":\"http\","
	         "\"status\":\"critical\"}]",
	         "field 'checks[1].name': the check 'http' is given twice"},
	};
	char text[1024];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "%s" CHECKED("%s"), REGION_LINE, cases[i][0]);
		refused(s, text, cases[i][1]);
	}
	char many[2048] = "[";
	for (int i = 0; i < REG_CHECKS_MAX + 1; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many),
		         "%s{\"name\":\"c%d\",\"status\":\"passing\"}", i ? "," : "", i);
	strcat(many, "]");
	char big[4096];
	snprintf(big, sizeof(big), CHECKED("%s"), many);
	refused(s, big, "field 'checks': 17 checks; at most 16");
}

/* healthy.<app> and healthy.<region>.<app> read as the healthy names: never a name */
static void test_healthy_is_reserved(void **s)
{
	refused(s,
	        "{\"kind\":\"region\",\"code\":\"healthy\",\"name\":\"X\",\"lat\":1,\"lon\":2}\n",
	        "field 'code': 'healthy' is a reserved word");
	refused(s,
	        MACHINE("00000000000009", "alpha", "healthy", "ord", "fdaa:0:18:1:1:0:9:2",
	                "started", "app", ""),
	        "field 'app': 'healthy' is a reserved word of the names (healthy.<app>)");
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "started",
	                "healthy", ""),
	        "field 'process_group': 'healthy' is a reserved word");
}

/* export carries name and status; the API's other fields are not kept */
static void test_checks_round_trip_through_export(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	const char *text = CHECKED("[{\"name\":\"http\",\"status\":\"passing\",\"output\":"
	                           "\"200 OK\",\"updated_at\":\"2026-12-07T18:00:00Z\"},"
	                           "{\"name\":\"disk\",\"status\":\"critical\"}]");
	if (import_str(fx->reg, text, false, err))
		fail_msg("%s", err);
	char *first = export_str(fx->reg);
	if (!strstr(first, "\"checks\":[{\"name\":\"http\",\"status\":\"passing\"},"
	                   "{\"name\":\"disk\",\"status\":\"critical\"}]"))
		fail_msg("export: %s", first);
	assert_null(strstr(first, "200 OK"));
	assert_int_equal(import_str(fx->reg, first, true, err), 0);
	char *second = export_str(fx->reg);
	assert_string_equal(first, second);
	/* a status change is one write of the record; no checks at all is an empty list */
	if (import_str(fx->reg,
	               CHECKED("[{\"name\":\"http\",\"status\":\"passing\"},{\"name\":\"disk\","
	                       "\"status\":\"warning\"}]"),
	               false, err))
		fail_msg("%s", err);
	free(second);
	second = export_str(fx->reg);
	assert_non_null(strstr(second, "{\"name\":\"disk\",\"status\":\"warning\"}"));
	free(first), free(second);
	reg_txn_t *t;
	assert_int_equal(reg_txn_begin(fx->reg, false, &t), 0);
	assert_int_equal(reg_check(t, NULL, NULL), 0);
	reg_txn_abort(t);
}

/* A region defined in the same file as the Machine that names it is known. */
static void test_region_records_round_trip(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	const char *text =
	        "{\"kind\":\"region\",\"code\":\"zzz\",\"name\":\"Zed, Nowhere\",\"lat\":"
	        "-12.5,\"lon\":101.25}\n" MACHINE("00000000000009", "alpha", "web", "zzz",
	                                          "fdaa:0:18:1:1:0:9:2", "stopped", "app",
	                                          ",\"dns\":{\"skip_registration\":true},"
	                                          "\"metadata\":{\"fly_release_id\":\"01HZ\",\"v\":"
	                                          "\"v1.2.3\"}");
	if (import_str(fx->reg, text, false, err))
		fail_msg("%s", err);
	char *out = export_str(fx->reg);
	assert_non_null(strstr(out, "{\"kind\":\"region\",\"code\":\"zzz\",\"name\":\"Zed, "
	                            "Nowhere\",\"lat\":-12.5,\"lon\":101.25}\n"));
	assert_non_null(strstr(out, "{\"kind\":\"region\",\"code\":\"ord\",\"name\":\"Chicago, "
	                            "Illinois (US)\",\"lat\":41.9742,\"lon\":-87.9073}\n"));
	assert_non_null(strstr(out, "\"metadata\":{\"fly_release_id\":\"01HZ\",\"v\":\"v1.2.3\"},"
	                            "\"dns\":{\"skip_registration\":true}}"));
	assert_int_equal(import_str(fx->reg, out, true, err), 0);
	char *again = export_str(fx->reg);
	assert_string_equal(out, again);
	free(out), free(again);
}
/* A deleted region's Machines and peers keep it, and an update of one that names it still
 * applies (a follower's stop, say); a new record naming it is refused. */
static void test_a_deleted_region_is_kept_by_its_records(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	const char *setup =
	        "{\"kind\":\"region\",\"code\":\"zzz\",\"name\":\"Zed\",\"lat\":1,\"lon\":2}"
	        "\n" MACHINE("00000000000009", "alpha", "web", "zzz", "fdaa:0:18:1:1:0:9:2",
	                     "started", "app",
	                     "") "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"pz\",\"ip\":"
	                         "\"fdaa:0:18:3::2\",\"region\":\"zzz\"}\n";
	if (import_str(fx->reg, setup, false, err))
		fail_msg("%s", err);
	if (import_str(fx->reg, "{\"kind\":\"region\",\"code\":\"zzz\",\"op\":\"delete\"}\n", false,
	               err))
		fail_msg("%s", err);
	const char *update =
	        MACHINE("00000000000009", "alpha", "web", "zzz", "fdaa:0:18:1:1:0:9:2", "stopped",
	                "app", "") "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"pz\",\"ip\":"
	                           "\"fdaa:0:18:3::3\",\"region\":\"zzz\"}\n";
	if (import_str(fx->reg, update, false, err))
		fail_msg("an update of a deleted region's Machine and peer was refused: %s", err);
	char *out = export_str(fx->reg);
	assert_null(strstr(out, "\"code\":\"zzz\""));
	assert_non_null(strstr(out, "\"region\":\"zzz\",\"private_ip\":\"fdaa:0:18:1:1:0:9:2\","
	                            "\"state\":\"stopped\""));
	assert_non_null(strstr(out, "\"ip\":\"fdaa:0:18:3::3\",\"region\":\"zzz\""));
	free(out);
	/* a Machine new to it, or one moving into it, is refused */
	const char *const unknown[] = {MACHINE("0000000000000a", "alpha", "web", "zzz",
	                                       "fdaa:0:18:1:1:0:a:2", "started", "app", ""),
	                               MACHINE("00000000000001", "alpha", "web", "zzz",
	                                       "fdaa:0:18:1:1:0:1:2", "started", "app", "")};
	for (size_t i = 0; i < 2; i++) {
		assert_int_not_equal(import_str(fx->reg, unknown[i], false, err), 0);
		assert_non_null(strstr(err, "unknown region 'zzz'"));
	}
}

static void test_bad_state(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "web", "ord", "fdaa:0:18:1:1:0:9:2", "run ning",
	                "app", ""),
	        "field 'state'");
}
static void test_bad_op(void **s)
{
	refused(s, "{\"kind\":\"machine\",\"id\":\"00000000000001\",\"op\":\"remove\"}\n",
	        "field 'op': the only op is \"delete\"");
}
static void test_address_held_by_another_machine(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "api", "ord", "fdaa:0:18:1:1:0:1:2", "started",
	                "app", ""),
	        "field 'private_ip': address already held");
}
/* An address moves from Machine 1 (started at :1:2 in base) to Machine 9 in one file:
 * the file is judged by its end state, so 9 may come first. */
static void test_address_moves_within_one_file_in_either_order(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	if (import_str(fx->reg,
	               MACHINE("00000000000009", "alpha", "api", "ord", "fdaa:0:18:1:1:0:1:2",
	                       "started", "app", "")
	                       MACHINE("00000000000001", "alpha", "web", "ord",
	                               "fdaa:0:18:1:1:0:5:2", "started", "app", ""),
	               false, err))
		fail_msg("%s", err);
	reg_txn_t *t;
	reg_hit_t h;
	uint8_t ip[16];
	assert_int_equal(reg_txn_begin(fx->reg, false, &t), 0);
	inet_pton(AF_INET6, "fdaa:0:18:1:1:0:1:2", ip);
	assert_int_equal(reg_find_addr(t, ip, true, &h), 0);
	assert_memory_equal(h.id, "00000000000009", 14);
	inet_pton(AF_INET6, "fdaa:0:18:1:1:0:5:2", ip);
	assert_int_equal(reg_find_addr(t, ip, true, &h), 0);
	assert_memory_equal(h.id, "00000000000001", 14);
	assert_int_equal(reg_check(t, NULL, NULL), 0);
	reg_txn_abort(t);
}
/* Two Machines of one file want the same free address: the first in the file has it. */
static void test_two_machines_one_address_the_later_is_refused(void **s)
{
	refused(s,
	        MACHINE("00000000000009", "alpha", "zzz", "ord", "fdaa:0:18:1:1:0:7:2", "started",
	                "app", "") MACHINE("00000000000008", "alpha", "aaa", "ord",
	                                   "fdaa:0:18:1:1:0:7:2", "started", "app", ""),
	        "test.jsonl:2: field 'private_ip': address already held");
}
/* Machines are written sorted by app, not in file order: the registry is the same. */
static void test_many_machines_in_any_order_give_one_registry(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX], line[512];
	size_t cap = 64 * 512;
	char *fwd = calloc(1, cap), *rev = calloc(1, cap);
	for (int i = 0; i < 60; i++) {
		int k = (i * 37) % 60; /* apps and ids out of order */
		snprintf(line, sizeof(line),
		         MACHINE("%014x", "alpha", "app%d", "ord", "fdaa:0:18:1:1:0:%x:2", "%s",
		                 "app", ""),
		         100 + k, k % 7, 100 + k, k % 3 ? "started" : "stopped");
		size_t len = strlen(line), have = strlen(fwd);
		assert_true(have + len < cap);
		memcpy(fwd + have, line, len + 1);
		memmove(rev + len, rev, have + 1);
		memcpy(rev, line, len);
	}
	if (import_str(fx->reg, fwd, false, err))
		fail_msg("%s", err);
	char *a = export_str(fx->reg);
	if (import_str(fx->reg, fx->before, true, err) || import_str(fx->reg, rev, false, err))
		fail_msg("%s", err);
	char *b = export_str(fx->reg);
	assert_string_equal(a, b);
	reg_txn_t *t;
	assert_int_equal(reg_txn_begin(fx->reg, false, &t), 0);
	assert_int_equal(reg_check(t, NULL, NULL), 0);
	reg_txn_abort(t);
	free(a), free(b), free(fwd), free(rev);
}
static void test_error_after_good_lines_keeps_nothing(void **s)
{
	refused(s, GOOD_M("00000000000009") ORG_B "{\"kind\":\"peer\",\"org\":\"beta\"}\n",
	        "test.jsonl:3: field 'name': missing");
}

static void test_labels_are_lower_cased(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	assert_int_equal(
	        import_str(fx->reg,
	                   MACHINE("00000000000009", "Alpha", "API", "ORD", "fdaa:0:18:1:1:0:9:2",
	                           "Started", "App", ",\"metadata\":{\"Role\":\"Primary\"}"),
	                   false, err),
	        0);
	char *out = export_str(fx->reg);
	assert_non_null(strstr(out, "\"app\":\"api\",\"region\":\"ord\""));
	/* metadata is the Machines API's: kept as given (names ignore its case) */
	assert_non_null(strstr(out, "\"metadata\":{\"Role\":\"Primary\"}"));
	free(out);
}

static void test_defaults_group_app_and_state_started(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	assert_int_equal(
	        import_str(fx->reg,
	                   "{\"kind\":\"machine\",\"id\":\"00000000000009\",\"org\":\"alpha\","
	                   "\"app\":\"api\",\"region\":\"ord\",\"private_ip\":"
	                   "\"fdaa:0:18:1:1:0:9:2\"}\n",
	                   false, err),
	        0);
	char *out = export_str(fx->reg);
	assert_non_null(strstr(out, "\"state\":\"started\",\"process_group\":\"app\""));
	free(out);
}

static void test_delete_op_removes_and_is_idempotent(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	const char *del = "{\"kind\":\"machine\",\"id\":\"00000000000001\",\"op\":\"delete\"}\n";
	assert_int_equal(import_str(fx->reg, del, false, err), 0);
	char *out = export_str(fx->reg);
	assert_null(strstr(out, "00000000000001"));
	free(out);
	assert_int_equal(import_str(fx->reg, del, false, err), 0);
	assert_int_equal(import_str(fx->reg,
	                            "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"laptop\","
	                            "\"op\":\"delete\"}\n",
	                            false, err),
	                 0);
	out = export_str(fx->reg);
	assert_null(strstr(out, "laptop"));
	free(out);
}

/* A delete that names an org removes that org's Machine only: the id may have moved to
 * another org since (the follower's delete of an old key must not remove the new one). */
static void test_delete_with_an_org_is_that_orgs_only(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	/* the Machine moves from alpha to beta */
	assert_int_equal(import_str(fx->reg,
	                            ORG_B MACHINE("00000000000001", "beta", "web", "ord",
	                                          "fdaa:0:19:1:1:0:1:2", "started", "app", ""),
	                            false, err),
	                 0);
	const char *old = "{\"kind\":\"machine\",\"org\":\"alpha\",\"id\":\"00000000000001\","
	                  "\"op\":\"delete\"}\n";
	assert_int_equal(import_str(fx->reg, old, false, err), 0);
	char *out = export_str(fx->reg);
	assert_non_null(strstr(out, "fdaa:0:19:1:1:0:1:2")); /* beta's Machine stays */
	free(out);
	const char *now = "{\"kind\":\"machine\",\"org\":\"beta\",\"id\":\"00000000000001\","
	                  "\"op\":\"delete\"}\n";
	assert_int_equal(import_str(fx->reg, now, false, err), 0);
	out = export_str(fx->reg);
	assert_null(strstr(out, "00000000000001"));
	free(out);
}

/* An org deleted and made again in one transaction (two files of one import) still has
 * a serial: an org that exists never answers serial 0. */
typedef struct {
	jsonl_t *j[2];
	char *err;
} two_t;

static int apply_two(reg_txn_t *txn, void *arg)
{
	two_t *t = arg;
	int rc = jsonl_apply(txn, t->j[0], false, t->err);
	return rc ? rc : jsonl_apply(txn, t->j[1], false, t->err);
}

static jsonl_t *parse_str(const char *text, const char *name)
{
	char err[JSONL_ERR_MAX];
	jsonl_t *j = NULL;
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	assert_non_null(f);
	assert_int_equal(jsonl_parse(f, name, &j, err), 0);
	fclose(f);
	return j;
}

static void test_an_org_made_again_keeps_a_serial(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	two_t two = {
	        {parse_str("{\"kind\":\"machine\",\"id\":\"00000000000001\",\"op\":\"delete\"}\n"
	                   "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"laptop\",\"op\":"
	                   "\"delete\"}\n"
	                   "{\"kind\":\"org\",\"slug\":\"alpha\",\"op\":\"delete\"}\n",
	                   "o2.jsonl"),
	         parse_str(ORG_A MACHINE("00000000000001", "alpha", "web", "ord",
	                                 "fdaa:0:18:1:1:0:1:2", "started", "app", ""),
	                   "o3.jsonl")},
	        err};
	assert_int_equal(reg_write(fx->reg, apply_two, &two), 0);
	jsonl_free(two.j[0]);
	jsonl_free(two.j[1]);
	reg_txn_t *t;
	uint32_t net;
	assert_int_equal(reg_txn_begin(fx->reg, false, &t), 0);
	assert_int_equal(reg_org_net(t, "alpha", 5, &net), 0);
	assert_true(reg_org_serial(t, net) > 0);
	assert_int_equal(reg_org_serial(t, net), reg_generation(t));
	reg_txn_abort(t);
}

/* A chain of address moves, each Machine taking the next one's address, in the worst
 * order (one link freed a round): applied whatever its length. A swap is a cycle and is
 * refused, naming a line. */
static void test_a_long_chain_of_moves_applies(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX], first[4096] = "", moves[4096] = "", m[512];
	for (int i = 1; i <= 12; i++) {
		char id[8], ip[64], next[64];
		snprintf(id, sizeof(id), "m%02d", i);
		snprintf(ip, sizeof(ip), "fdaa:0:18:1:1:0:%x:2", 0x100 + i);
		snprintf(next, sizeof(next), "fdaa:0:18:1:1:0:%x:2", 0x100 + i + 1);
		snprintf(m, sizeof(m),
		         MACHINE("%s", "alpha", "chain", "ord", "%s", "started", "app", ""), id,
		         ip);
		strcat(first, m);
		snprintf(m, sizeof(m),
		         MACHINE("%s", "alpha", "chain", "ord", "%s", "started", "app", ""), id,
		         next);
		strcat(moves, m);
	}
	assert_int_equal(import_str(fx->reg, first, false, err), 0);
	if (import_str(fx->reg, moves, false, err) != 0)
		fail_msg("the chain was refused: %s", err);
	char *out = export_str(fx->reg);
	assert_non_null(strstr(out, "fdaa:0:18:1:1:0:10d:2")); /* m12's new, free address */
	assert_null(strstr(out, "fdaa:0:18:1:1:0:101:2"));     /* m01's old one, left free */
	free(out);
	const char *swap =
	        MACHINE("m01", "alpha", "chain", "ord", "fdaa:0:18:1:1:0:103:2", "started", "app",
	                "") MACHINE("m02", "alpha", "chain", "ord", "fdaa:0:18:1:1:0:102:2",
	                            "started", "app", "");
	assert_int_not_equal(import_str(fx->reg, swap, false, err), 0);
	assert_non_null(strstr(err, "test.jsonl:"));
}

/* A peer may take the address a Machine of the same file gives up later in the file, and
 * a Machine the one a peer gives up: the end state counts for peers too. */
static void test_a_peer_takes_an_address_freed_later(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	/* the peer takes Machine 1's address, which Machine 1 gives up (it stops) on the next
	 * line, and a new Machine the peer's old one: a chain, in the worst order */
	const char *moves =
	        "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"laptop\",\"ip\":"
	        "\"fdaa:0:18:1:1:0:1:2\",\"region\":\"ams\"}\n" MACHINE(
	                "00000000000001", "alpha", "web", "ord", "fdaa:0:18:1:1:0:1:2", "stopped",
	                "app", "") MACHINE("00000000000002", "alpha", "web", "ord",
	                                   "fdaa:0:18:2::2", "started", "app", "");
	if (import_str(fx->reg, moves, false, err) != 0)
		fail_msg("the moves were refused: %s", err);
	char *out = export_str(fx->reg);
	assert_non_null(strstr(out, "\"name\":\"laptop\",\"ip\":\"fdaa:0:18:1:1:0:1:2\""));
	assert_non_null(strstr(out, "\"state\":\"stopped\""));
	assert_non_null(strstr(out, "\"private_ip\":\"fdaa:0:18:2::2\""));
	free(out);
	/* a peer that takes a started Machine's address for good: refused, and the message
	 * says why (waiting for the address to be freed ends at the end of the file) */
	const char *taken = "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"laptop\",\"ip\":"
	                    "\"fdaa:0:18:2::2\",\"region\":\"ams\"}\n";
	assert_int_not_equal(import_str(fx->reg, taken, false, err), 0);
	assert_non_null(strstr(err, "test.jsonl:1: field 'ip': address already held"));
}

static void test_export_import_replace_round_trip(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	FILE *f = fopen("../zones/demo.jsonl", "r");
	if (!f)
		f = fopen("zones/demo.jsonl", "r");
	assert_non_null(f);
	char demo[1 << 14], all[1 << 15];
	size_t n = fread(demo, 1, sizeof(demo) - 1, f);
	demo[n] = '\0';
	fclose(f);
	snprintf(all, sizeof(all), "%s%s", regions_jsonl(), demo);
	assert_int_equal(import_str(fx->reg, all, true, err), 0);
	char *first = export_str(fx->reg);
	assert_null(strstr(first, "alpha")); /* --replace dropped the old org */
	assert_non_null(strstr(first, "\"slug\":\"demo\""));
	assert_int_equal(import_str(fx->reg, first, true, err), 0);
	char *second = export_str(fx->reg);
	assert_string_equal(first, second);
	free(first), free(second);
}

static void test_replace_with_bad_file_keeps_old_registry(void **s)
{
	fx_t *fx = *s;
	char err[JSONL_ERR_MAX];
	assert_int_not_equal(import_str(fx->reg, ORG_B "not json\n", true, err), 0);
	char *after = export_str(fx->reg);
	assert_string_equal(fx->before, after);
	free(after);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(test_malformed_json_names_line),
	        T(test_line_that_is_not_an_object),
	        T(test_missing_kind),
	        T(test_unknown_kind),
	        T(test_unknown_field),
	        T(test_app_not_a_label),
	        T(test_label_too_long),
	        T(test_region_with_trailing_hyphen),
	        T(test_machine_id_neither_hex_nor_label),
	        T(test_private_ip_outside_org),
	        T(test_private_ip_not_ipv6),
	        T(test_private_ip_outside_6pn),
	        T(test_unknown_org),
	        T(test_duplicate_id_in_one_file),
	        T(test_duplicate_org_in_one_file),
	        T(test_org_network_not_a_48),
	        T(test_org_network_taken),
	        T(test_metadata_value_not_string),
	        T(test_metadata_value_with_control_character),
	        T(test_metadata_key_twice_ignoring_case),
	        T(test_machine_in_unknown_region),
	        T(test_peer_in_unknown_region),
	        T(test_reserved_region_code),
	        T(test_reserved_process_group),
	        T(test_region_latitude_out_of_range),
	        T(test_dns_field_unknown_key),
	        T(test_bad_checks_name_the_line_and_field),
	        T(test_healthy_is_reserved),
	        T(test_checks_round_trip_through_export),
	        T(test_region_records_round_trip),
	        T(test_bad_state),
	        T(test_bad_op),
	        T(test_address_held_by_another_machine),
	        T(test_address_moves_within_one_file_in_either_order),
	        T(test_two_machines_one_address_the_later_is_refused),
	        T(test_many_machines_in_any_order_give_one_registry),
	        T(test_error_after_good_lines_keeps_nothing),
	        T(test_labels_are_lower_cased),
	        T(test_defaults_group_app_and_state_started),
	        T(test_delete_op_removes_and_is_idempotent),
	        T(test_delete_with_an_org_is_that_orgs_only),
	        T(test_an_org_made_again_keeps_a_serial),
	        T(test_a_long_chain_of_moves_applies),
	        T(test_a_peer_takes_an_address_freed_later),
	        T(test_a_deleted_region_is_kept_by_its_records),
	        T(test_export_import_replace_round_trip),
	        T(test_replace_with_bad_file_keeps_old_registry),
	};
	return cmocka_run_group_tests_name("jsonl", tests, NULL, NULL);
}
