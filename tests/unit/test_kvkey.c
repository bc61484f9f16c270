/* test_kvkey.c — the fleet bucket's key layout: every kind's record to its key, the
 * Machine delete that names only its id, refusals, and each key back to the delete
 * record that removes it (which must itself map back to the same key). */
#include "testreg.h"

#include "kvkey.h"

static int key_of(const char *line, char *key, bool *del, char *id)
{
	char err[200];
	return kvkey_of_record(line, strlen(line), key, KVKEY_MAX, del, id, 64, err, sizeof(err));
}

static void test_every_kind_has_its_key(void **state)
{
	(void)state;
	char key[KVKEY_MAX], id[64];
	bool del;
	assert_int_equal(
	        key_of("{\"kind\":\"org\",\"slug\":\"Personal\",\"network\":\"fdaa:0:18::/48\"}",
	               key, &del, id),
	        KVKEY_ORG);
	assert_string_equal(key, "org.personal");
	assert_false(del);
	assert_int_equal(
	        key_of("{\"kind\":\"machine\",\"id\":\"90706e10f12094\",\"org\":\"personal\","
	               "\"app\":\"a\",\"region\":\"ord\",\"private_ip\":\"fdaa:0:18::2\"}",
	               key, &del, id),
	        KVKEY_MACHINE);
	assert_string_equal(key, "machine.personal.90706e10f12094");
	assert_int_equal(key_of("{\"kind\":\"peer\",\"org\":\"personal\",\"name\":\"laptop\"}", key,
	                        &del, id),
	                 KVKEY_PEER);
	assert_string_equal(key, "peer.personal.laptop");
	assert_int_equal(key_of("{\"kind\":\"flycast\",\"org\":\"personal\",\"app\":\"my-app\","
	                        "\"ip\":\"fdaa:0:18:0:1::3\"}",
	                        key, &del, id),
	                 KVKEY_FLYCAST);
	assert_string_equal(key, "flycast.personal.my-app.fdaa0000001800000001000000000003");
	assert_int_equal(key_of("{\"kind\":\"region\",\"code\":\"ORD\",\"name\":\"Chicago\"}", key,
	                        &del, id),
	                 KVKEY_REGION);
	assert_string_equal(key, "region.ord");
}

/* The key holds the address as hex nibbles: every form import reads is fine, an embedded
 * IPv4 part's dots included (they never reach the key). */
static void test_flycast_address_in_any_form_import_reads(void **state)
{
	(void)state;
	char key[KVKEY_MAX], id[64];
	bool del;
	assert_int_equal(key_of("{\"kind\":\"flycast\",\"org\":\"personal\",\"app\":\"my-app\","
	                        "\"ip\":\"fdaa:0:18::1.2.3.4\"}",
	                        key, &del, id),
	                 KVKEY_FLYCAST);
	assert_string_equal(key, "flycast.personal.my-app.fdaa0000001800000000000001020304");
	assert_int_equal(key_of("{\"kind\":\"flycast\",\"org\":\"personal\",\"app\":\"my-app\","
	                        "\"ip\":\"FDAA:0:18:0:1:0:0:3\",\"op\":\"delete\"}",
	                        key, &del, id),
	                 KVKEY_FLYCAST);
	assert_true(del);
	assert_string_equal(key, "flycast.personal.my-app.fdaa0000001800000001000000000003");
	assert_int_equal(key_of("{\"kind\":\"flycast\",\"org\":\"o\",\"app\":\"a\","
	                        "\"ip\":\"fdaa:0:18::1.2.3\"}",
	                        key, &del, id),
	                 -EINVAL);
	assert_int_equal(key_of("{\"kind\":\"flycast\",\"org\":\"o\",\"app\":\"a\","
	                        "\"ip\":\"fdaa:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:1\"}",
	                        key, &del, id),
	                 -EINVAL);
	assert_int_equal(key_of("{\"kind\":\"flycast\",\"org\":\"o\",\"app\":\"a\",\"ip\":7}", key,
	                        &del, id),
	                 -EINVAL);
}

static void test_machine_delete_by_id_leaves_the_org_to_the_caller(void **state)
{
	(void)state;
	char key[KVKEY_MAX], id[64];
	bool del;
	assert_int_equal(
	        key_of("{\"kind\":\"machine\",\"id\":\"90706e10f12094\",\"op\":\"delete\"}", key,
	               &del, id),
	        KVKEY_MACHINE);
	assert_true(del);
	assert_string_equal(key, "");
	assert_string_equal(id, "90706e10f12094");
	assert_int_equal(kvkey_machine("personal", id, key, sizeof(key)), 0);
	assert_string_equal(key, "machine.personal.90706e10f12094");
	assert_int_equal(kvkey_machine("personal", id, key, 10), -ENAMETOOLONG);
}

static void test_records_without_their_key_fields_are_refused(void **state)
{
	(void)state;
	char key[KVKEY_MAX], id[64];
	bool del;
	assert_int_equal(key_of("not json", key, &del, id), -EINVAL);
	assert_int_equal(key_of("[1]", key, &del, id), -EINVAL);
	assert_int_equal(key_of("{\"kind\":\"zone\"}", key, &del, id), -EINVAL);
	assert_int_equal(key_of("{\"kind\":\"org\"}", key, &del, id), -EINVAL);
	assert_int_equal(
	        key_of("{\"kind\":\"peer\",\"org\":\"a.b\",\"name\":\"n\"}", key, &del, id),
	        -EINVAL);
	assert_int_equal(
	        key_of("{\"kind\":\"machine\",\"id\":\"x>\",\"org\":\"o\"}", key, &del, id),
	        -EINVAL);
	assert_int_equal(
	        key_of("{\"kind\":\"flycast\",\"org\":\"o\",\"app\":\"a\",\"ip\":\"nope\"}", key,
	               &del, id),
	        -EINVAL);
}

static void test_keys_of_the_layout(void **state)
{
	(void)state;
	assert_int_equal(kvkey_kind("org.a"), KVKEY_ORG);
	assert_int_equal(kvkey_kind("machine.a.b"), KVKEY_MACHINE);
	assert_int_equal(kvkey_kind("region.ord"), KVKEY_REGION);
	assert_int_equal(kvkey_kind("flycast.a.b.fdaa0000001800000001000000000003"), KVKEY_FLYCAST);
	assert_int_equal(kvkey_kind("flycast.a.b.fdaa"), -EINVAL);
	assert_int_equal(kvkey_kind("machine.a"), -EINVAL);
	assert_int_equal(kvkey_kind("org.a.b"), -EINVAL);
	assert_int_equal(kvkey_kind("zone.a"), -EINVAL);
	assert_int_equal(kvkey_kind("org."), -EINVAL);
	assert_int_equal(kvkey_kind(""), -EINVAL);
}

static void test_delete_record_maps_back_to_its_key(void **state)
{
	(void)state;
	const char *keys[] = {"org.a", "region.ord", "peer.a.laptop",
	                      "flycast.a.web.fdaa0000001800000001000000000003"};
	for (size_t i = 0; i < 4; i++) {
		char rec[512], key[KVKEY_MAX], id[64];
		bool del;
		assert_int_equal(kvkey_delete_record(keys[i], rec, sizeof(rec)), 0);
		assert_true(key_of(rec, key, &del, id) >= 0);
		assert_true(del);
		assert_string_equal(key, keys[i]);
	}
	char rec[512], key[KVKEY_MAX], id[64];
	bool del;
	/* a Machine's delete names its org: the id may be another org's Machine by now */
	assert_int_equal(kvkey_delete_record("machine.a.90706e10f12094", rec, sizeof(rec)), 0);
	assert_string_equal(rec, "{\"kind\":\"machine\",\"org\":\"a\",\"id\":\"90706e10f12094\","
	                         "\"op\":\"delete\"}");
	assert_int_equal(key_of(rec, key, &del, id), KVKEY_MACHINE);
	assert_string_equal(key, "machine.a.90706e10f12094");
	assert_int_equal(kvkey_delete_record("bogus", rec, sizeof(rec)), -EINVAL);
	assert_int_equal(kvkey_delete_record("org.a", rec, 8), -ENOSPC);
}

static void test_region_of_a_machine_or_peer(void **state)
{
	(void)state;
	char r[64];
	const char *m = "{\"kind\":\"machine\",\"id\":\"x\",\"region\":\"ORD\"}";
	assert_int_equal(kvkey_region_of(m, strlen(m), r, sizeof(r)), 0);
	assert_string_equal(r, "ord");
	const char *o = "{\"kind\":\"org\",\"slug\":\"a\"}";
	assert_int_equal(kvkey_region_of(o, strlen(o), r, sizeof(r)), -ENOENT);
	assert_int_equal(kvkey_region_of("nope", 4, r, sizeof(r)), -ENOENT);
	assert_int_equal(kvkey_region_of(m, strlen(m), r, 3), -ENOENT);
}

/* The address a put takes, and whether it holds it as the registry counts holders. */
static void test_addr_of_a_machine_or_peer(void **state)
{
	(void)state;
	uint8_t want[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, [15] = 2};
	char key[KVKEY_MAX], id[64], err[200];
	bool del;
	kvkey_addr_t a;
	const char *recs[] = {
	        "{\"kind\":\"machine\",\"id\":\"x\",\"org\":\"o\",\"private_ip\":\"fdaa:0:18::2\"}",
	        "{\"kind\":\"machine\",\"id\":\"x\",\"org\":\"o\",\"private_ip\":\"fdaa:0:18::2\","
	        "\"state\":\"started\",\"dns\":{\"skip_registration\":false}}",
	        "{\"kind\":\"peer\",\"org\":\"o\",\"name\":\"n\",\"ip\":\"fdaa:0:18::0.0.0.2\"}",
	        "{\"kind\":\"machine\",\"id\":\"x\",\"org\":\"o\",\"private_ip\":\"fdaa:0:18::2\","
	        "\"state\":\"stopped\"}",
	        "{\"kind\":\"machine\",\"id\":\"x\",\"org\":\"o\",\"private_ip\":\"fdaa:0:18::2\","
	        "\"dns\":{\"skip_registration\":true}}",
	};
	for (size_t i = 0; i < 5; i++) {
		assert_true(kvkey_of_record_addr(recs[i], strlen(recs[i]), key, sizeof(key), &del,
		                                 id, sizeof(id), &a, err, sizeof(err)) >= 0);
		assert_true(a.set);
		assert_memory_equal(a.ip, want, 16);
		assert_true(a.holds == (i < 3));
	}
	static const char peer_delete[] =
	        "{\"kind\":\"peer\",\"org\":\"o\",\"name\":\"n\",\"ip\":\"fdaa:0:18::2\","
	        "\"op\":\"delete\"}";
	const char *none[] = {
	        "{\"kind\":\"flycast\",\"org\":\"o\",\"app\":\"a\",\"ip\":\"fdaa:0:18::2\"}",
	        peer_delete,
	        "{\"kind\":\"machine\",\"id\":\"x\",\"org\":\"o\",\"private_ip\":\"nope\"}",
	        "{\"kind\":\"org\",\"slug\":\"o\"}",
	};
	for (size_t i = 0; i < 4; i++) {
		a.set = true;
		assert_true(kvkey_of_record_addr(none[i], strlen(none[i]), key, sizeof(key), &del,
		                                 id, sizeof(id), &a, err, sizeof(err)) >= 0);
		assert_false(a.set);
	}
	a.set = true;
	assert_int_equal(kvkey_of_record_addr("nope", 4, key, sizeof(key), &del, id, sizeof(id), &a,
	                                      err, sizeof(err)),
	                 -EINVAL);
	assert_false(a.set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_every_kind_has_its_key),
	        cmocka_unit_test(test_flycast_address_in_any_form_import_reads),
	        cmocka_unit_test(test_machine_delete_by_id_leaves_the_org_to_the_caller),
	        cmocka_unit_test(test_records_without_their_key_fields_are_refused),
	        cmocka_unit_test(test_keys_of_the_layout),
	        cmocka_unit_test(test_delete_record_maps_back_to_its_key),
	        cmocka_unit_test(test_region_of_a_machine_or_peer),
	        cmocka_unit_test(test_addr_of_a_machine_or_peer),
	};
	return cmocka_run_group_tests_name("kvkey", tests, NULL, NULL);
}
