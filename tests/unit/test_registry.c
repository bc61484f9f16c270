/* test_registry.c — the LMDB schema through its public API: every index after put,
 * start, stop, delete and replace; the generation; map growth; check. */
#include "testreg.h"

#include <arpa/inet.h>
#include <lmdb.h>

typedef struct {
	char *dir;
	reg_t *reg;
} fx_t;

static const char base[] = ORG_A ORG_B MACHINE("00000000000001", "alpha", "web", "ord",
                                               "fdaa:0:18:1:1:0:1:2", "started", "app",
                                               ",\"metadata\":{\"role\":\"primary\"}")
        MACHINE("00000000000002", "alpha", "web", "iad", "fdaa:0:18:1:1:0:2:2", "started", "worker",
                ",\"metadata\":{\"role\":\"replica\"}")
                MACHINE("00000000000003", "alpha", "web", "ord", "fdaa:0:18:1:1:0:3:2", "stopped",
                        "app", "") MACHINE("00000000000004", "beta", "web", "ord",
                                           "fdaa:0:19:1:1:0:4:2", "started", "app",
                                           "") "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":"
                                               "\"laptop\",\"ip\":\"fdaa:0:18:2::2\","
                                               "\"region\":\"ams\"}\n"
                                               "{\"kind\":\"flycast\",\"org\":\"alpha\",\"app\":"
                                               "\"web\",\"ip\":\"fdaa:0:18:0:1::3\"}\n";

static int setup(void **state)
{
	fx_t *fx = calloc(1, sizeof(*fx));
	fx->reg = reg_fixture(&fx->dir, base);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	fx_t *fx = *state;
	reg_close(fx->reg);
	tmp_free(fx->dir);
	free(fx);
	return 0;
}

static reg_txn_t *rd(fx_t *fx)
{
	reg_txn_t *t;
	assert_int_equal(reg_txn_begin(fx->reg, false, &t), 0);
	return t;
}

static int count_hits(const reg_hit_t *h, void *arg)
{
	(void)h;
	(*(int *)arg)++;
	return 0;
}

#define NET_A 0x00000018u
#define NET_B 0x00000019u

static void assert_indexes(fx_t *fx, int app, int ord, int iad, int grp_app, int primary)
{
	reg_txn_t *t = rd(fx);
	assert_int_equal(reg_walk_app(t, NET_A, "web", 3, NULL, NULL), app);
	assert_int_equal(reg_walk_app_region(t, NET_A, "web", 3, "ord", 3, NULL, NULL), ord);
	assert_int_equal(reg_walk_app_region(t, NET_A, "web", 3, "iad", 3, NULL, NULL), iad);
	assert_int_equal(reg_ips(t, NET_A, REG_SET_APP, "web", 3, NULL, 0, NULL, 0, NULL, NULL),
	                 app);
	assert_int_equal(reg_ips(t, NET_A, REG_SET_REGION, "web", 3, "ord", 3, NULL, 0, NULL, NULL),
	                 ord);
	assert_int_equal(reg_ips(t, NET_A, REG_SET_GROUP, "web", 3, "app", 3, NULL, 0, NULL, NULL),
	                 grp_app);
	assert_int_equal(
	        reg_ips(t, NET_A, REG_SET_META, "web", 3, "role", 4, "primary", 7, NULL, NULL),
	        primary);
	uint32_t n;
	assert_int_equal(reg_count_app(t, NET_A, "web", 3, &n), 0);
	assert_int_equal(n, (uint32_t)app);
	assert_int_equal(reg_count_app_region(t, NET_A, "web", 3, "ord", 3, &n), 0);
	assert_int_equal(n, (uint32_t)ord);
	assert_int_equal(reg_check(t, NULL, NULL), 0);
	reg_txn_abort(t);
}

static void test_started_machines_are_in_every_index(void **state)
{
	assert_indexes(*state, 2, 1, 1, 1, 1);
}

static void test_orgs_are_separate_key_ranges(void **state)
{
	reg_txn_t *t = rd(*state);
	assert_int_equal(reg_walk_app(t, NET_B, "web", 3, NULL, NULL), 1);
	assert_int_equal(reg_walk_org(t, NET_A, NULL, NULL), 2);
	assert_int_equal(reg_walk_org(t, NET_B, NULL, NULL), 1);
	assert_int_equal(reg_walk_org(t, 0x20, NULL, NULL), 0);
	reg_txn_abort(t);
}

static int stop1(reg_txn_t *t, void *arg)
{
	return reg_set_state(t, arg, "stopped");
}
static int start3(reg_txn_t *t, void *arg)
{
	return reg_set_state(t, arg, "started");
}
static int delete_it(reg_txn_t *t, void *arg)
{
	return reg_delete_machine(t, arg);
}

static void test_stop_and_start_move_a_machine_out_and_in(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(reg_write(fx->reg, stop1, "00000000000001"), 0);
	assert_indexes(fx, 1, 0, 1, 0, 0);
	assert_int_equal(reg_write(fx->reg, start3, "00000000000003"), 0);
	assert_indexes(fx, 2, 1, 1, 1, 0);
	assert_int_equal(reg_write(fx->reg, start3, "00000000000001"), 0);
	assert_indexes(fx, 3, 2, 1, 2, 1);
}

static void test_delete_removes_every_entry(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(reg_write(fx->reg, delete_it, "00000000000001"), 0);
	assert_indexes(fx, 1, 0, 1, 0, 0);
	assert_int_equal(reg_write(fx->reg, delete_it, "00000000000001"), -ENOENT);
	reg_txn_t *t = rd(fx);
	reg_machine_buf_t b;
	assert_int_equal(reg_get_machine(t, "00000000000001", &b), -ENOENT);
	reg_hit_t h;
	uint8_t ip[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 1, 0, 1, 0, 0, 0, 1, 0, 2};
	assert_int_equal(reg_find_addr(t, ip, true, &h), -ENOENT);
	reg_txn_abort(t);
}

static void test_generation_counts_every_write(void **state)
{
	fx_t *fx = *state;
	reg_txn_t *t = rd(fx);
	uint64_t g = reg_generation(t);
	reg_txn_abort(t);
	assert_int_equal(g, 2); /* the regions, then base */
	assert_int_equal(reg_write(fx->reg, stop1, "00000000000001"), 0);
	assert_int_equal(reg_write(fx->reg, stop1, "00000000000001"), 0);
	t = rd(fx);
	assert_int_equal(reg_generation(t), 4);
	reg_txn_abort(t);
}

static void test_failed_write_changes_nothing(void **state)
{
	fx_t *fx = *state;
	char *before = export_str(fx->reg);
	assert_int_equal(reg_write(fx->reg, stop1, "nope"), -ENOENT);
	char *after = export_str(fx->reg);
	assert_string_equal(before, after);
	reg_txn_t *t = rd(fx);
	assert_int_equal(reg_generation(t), 2);
	reg_txn_abort(t);
	free(before), free(after);
}

static int clear_it(reg_txn_t *t, void *arg)
{
	(void)arg;
	return reg_clear(t);
}

static void test_clear_empties_every_table(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(reg_write(fx->reg, clear_it, NULL), 0);
	char *out = export_str(fx->reg);
	assert_string_equal(out, "");
	free(out);
	reg_txn_t *t = rd(fx);
	reg_stats_t s;
	assert_int_equal(reg_stats(t, &s), 0);
	assert_int_equal(s.index_entries, 0);
	assert_int_equal(s.regions, 0);
	assert_int_equal(s.generation, 3);
	reg_txn_abort(t);
}

/* Upserts Machine 1 of the fixture as given (the import path the follower takes). */
static void upsert1(fx_t *fx, const char *region, const char *ip, const char *state,
                    const char *group, const char *extra)
{
	char rec[512], err[JSONL_ERR_MAX];
	snprintf(rec, sizeof(rec),
	         "{\"kind\":\"machine\",\"id\":\"00000000000001\",\"org\":\"alpha\","
	         "\"app\":\"web\",\"region\":\"%s\",\"private_ip\":\"%s\",\"state\":"
	         "\"%s\",\"process_group\":\"%s\"%s}\n",
	         region, ip, state, group, extra);
	assert_int_equal(import_str(fx->reg, rec, false, err), 0);
}

static void assert_any(fx_t *fx, int all_vms, int all_regions, const char *ip1, const char *region)
{
	reg_txn_t *t = rd(fx);
	assert_int_equal(reg_walk_all_app(t, NET_A, "web", 3, NULL, NULL), all_vms);
	assert_int_equal(reg_walk_all_app_regions(t, NET_A, "web", 3, NULL, NULL), all_regions);
	uint8_t ip[16];
	reg_hit_t h;
	assert_int_equal(inet_pton(AF_INET6, ip1, ip), 1);
	if (region) {
		assert_int_equal(reg_find_any_addr(t, ip, &h), 0);
		assert_memory_equal(h.id, "00000000000001", 14);
		assert_int_equal(h.region_len, strlen(region));
		assert_memory_equal(h.region, region, h.region_len);
	} else {
		assert_int_equal(reg_find_any_addr(t, ip, &h), -ENOENT);
	}
	reg_txn_abort(t);
}

/* An update rewrites only the index entries that differ (a start or stop leaves the all
 * table alone): every kind of change, one at a time, leaves each index right. */
static void test_each_kind_of_change_moves_exactly_its_entries(void **state)
{
	fx_t *fx = *state;
	const char *ip1 = "fdaa:0:18:1:1:0:1:2", *ip9 = "fdaa:0:18:1:1:0:9:2";
	const char *primary = ",\"metadata\":{\"role\":\"primary\"}";
	const char *replica = ",\"metadata\":{\"role\":\"replica\"}";
	upsert1(fx, "ord", ip1, "started", "app", primary); /* unchanged */
	assert_indexes(fx, 2, 1, 1, 1, 1);
	upsert1(fx, "ord", ip1, "started", "worker", primary); /* group */
	assert_indexes(fx, 2, 1, 1, 0, 1);
	upsert1(fx, "ord", ip1, "started", "worker", replica); /* metadata */
	assert_indexes(fx, 2, 1, 1, 0, 0);
	upsert1(fx, "iad", ip1, "started", "worker", replica); /* region, started */
	assert_indexes(fx, 2, 0, 2, 0, 0);
	assert_any(fx, 3, 2, ip1, "iad");
	upsert1(fx, "iad", ip1, "stopped", "worker", replica); /* stop */
	assert_indexes(fx, 1, 0, 1, 0, 0);
	assert_any(fx, 3, 2, ip1, "iad");
	upsert1(fx, "ord", ip1, "stopped", "worker", primary); /* region and metadata, stopped */
	assert_indexes(fx, 1, 0, 1, 0, 0);
	assert_any(fx, 3, 2, ip1, "ord");
	upsert1(fx, "ord", ip9, "stopped", "worker", primary); /* address, stopped */
	assert_any(fx, 3, 2, ip1, NULL);
	assert_any(fx, 3, 2, ip9, "ord");
	upsert1(fx, "ord", ip9, "started", "app", primary); /* start with a new group */
	assert_indexes(fx, 2, 1, 1, 1, 1);
	reg_txn_t *t = rd(fx);
	uint8_t ip[16];
	reg_hit_t h;
	assert_int_equal(inet_pton(AF_INET6, ip9, ip), 1);
	assert_int_equal(reg_find_addr(t, ip, true, &h), 0);
	assert_int_equal(inet_pton(AF_INET6, ip1, ip), 1);
	assert_int_equal(reg_find_addr(t, ip, true, &h), -ENOENT);
	reg_txn_abort(t);
	upsert1(fx, "ord", ip9, "started", "app",
	        ",\"dns\":{\"skip_registration\":true}"); /* out of DNS, started */
	assert_indexes(fx, 1, 0, 1, 0, 0);
	assert_any(fx, 2, 2, ip9, NULL);
	upsert1(fx, "ord", ip1, "started", "app", primary); /* back in, the old address */
	assert_indexes(fx, 2, 1, 1, 1, 1);
	assert_any(fx, 3, 2, ip1, "ord");
}

static void test_all_index_holds_every_state(void **state)
{
	fx_t *fx = *state;
	reg_txn_t *t = rd(fx);
	assert_int_equal(reg_walk_all_app(t, NET_A, "web", 3, NULL, NULL), 3);
	assert_int_equal(reg_walk_all_org(t, NET_A, NULL, NULL), 3);
	assert_int_equal(reg_walk_all_org(t, NET_B, NULL, NULL), 1);
	assert_int_equal(reg_walk_all_app_regions(t, NET_A, "web", 3, NULL, NULL), 2);
	reg_hit_t h;
	uint8_t ip3[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 1, 0, 1, 0, 0, 0, 3, 0, 2};
	assert_int_equal(reg_find_addr(t, ip3, false, &h), -ENOENT); /* stopped */
	assert_int_equal(reg_find_any_addr(t, ip3, &h), 0);
	assert_int_equal(h.id_len, 14);
	assert_memory_equal(h.id, "00000000000003", 14);
	assert_memory_equal(h.region, "ord", 3);
	ip3[15] = 9; /* another address of its /112 */
	assert_int_equal(reg_find_any_addr(t, ip3, &h), 0);
	ip3[13] = 9;
	assert_int_equal(reg_find_any_addr(t, ip3, &h), -ENOENT);
	reg_txn_abort(t);
	assert_int_equal(reg_write(fx->reg, delete_it, "00000000000003"), 0);
	t = rd(fx);
	assert_int_equal(reg_walk_all_app(t, NET_A, "web", 3, NULL, NULL), 2);
	assert_int_equal(reg_check(t, NULL, NULL), 0);
	reg_txn_abort(t);
}

static void test_key_only_metadata_set(void **state)
{
	reg_txn_t *t = rd(*state);
	assert_int_equal(
	        reg_ips(t, NET_A, REG_SET_META_KEY, "web", 3, "role", 4, NULL, 0, NULL, NULL), 2);
	assert_int_equal(reg_has_meta(t, NET_A, "web", 3), 1);
	assert_int_equal(reg_has_meta(t, NET_B, "web", 3), 0);
	reg_txn_abort(t);
}

static void test_serial_moves_only_with_the_orgs_records(void **state)
{
	fx_t *fx = *state;
	reg_txn_t *t = rd(fx);
	uint32_t a = reg_org_serial(t, NET_A), b = reg_org_serial(t, NET_B);
	reg_txn_abort(t);
	assert_int_equal(a, 2);
	assert_int_equal(reg_write(fx->reg, stop1, "00000000000004"), 0); /* beta's */
	t = rd(fx);
	assert_int_equal(reg_org_serial(t, NET_A), a);
	assert_int_equal(reg_org_serial(t, NET_B), 3);
	reg_txn_abort(t);
	assert_int_not_equal(b, 3);
	/* a write that changes nothing leaves the serial alone */
	char err[JSONL_ERR_MAX];
	assert_int_equal(import_str(fx->reg, base, false, err), 0);
	t = rd(fx);
	assert_int_equal(reg_org_serial(t, NET_A), a);
	reg_txn_abort(t);
}

static int delete_beta(reg_txn_t *t, void *arg)
{
	(void)arg;
	return reg_delete_org(t, "beta");
}

static void test_an_org_is_deleted_only_empty_and_its_serial_goes(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(reg_write(fx->reg, delete_beta, NULL), -ENOTEMPTY);
	assert_int_equal(reg_write(fx->reg, delete_it, "00000000000004"), 0);
	assert_int_equal(reg_write(fx->reg, delete_beta, NULL), 0);
	reg_txn_t *t = rd(fx);
	uint32_t net;
	assert_int_equal(reg_org_net(t, "beta", 4, &net), -ENOENT);
	assert_int_equal(reg_org_serial(t, NET_B), 0);
	assert_int_not_equal(reg_org_serial(t, NET_A), 0);
	assert_int_equal(reg_check(t, NULL, NULL), 0);
	reg_txn_abort(t);
}

static int put_conflict(reg_txn_t *t, void *arg)
{
	(void)arg;
	reg_machine_t m = {.id = "00000000000009",
	                   .app = "api",
	                   .region = "ord",
	                   .group = "app",
	                   .state = "started",
	                   .net = NET_A,
	                   .ip = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 1, 0, 1, 0, 0, 0, 1, 0, 2}};
	int rc = reg_put_machine(t, &m);
	/* refused before anything is written: the transaction holds no trace of it (jsonl
	 * tries such a record again later in the same transaction) */
	reg_machine_buf_t b;
	assert_int_equal(reg_get_machine(t, "00000000000009", &b), -ENOENT);
	uint32_t n = 1;
	assert_int_equal(reg_count_app(t, NET_A, "api", 3, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(reg_check(t, NULL, NULL), 0);
	return rc;
}

static void test_started_address_cannot_be_taken_twice(void **state)
{
	assert_int_equal(reg_write(((fx_t *)*state)->reg, put_conflict, NULL), -EADDRINUSE);
}

static void test_find_addr_exact_then_slash112(void **state)
{
	reg_txn_t *t = rd(*state);
	reg_hit_t h;
	uint8_t ip[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 1, 0, 1, 0, 0, 0, 1, 0, 2};
	assert_int_equal(reg_find_addr(t, ip, true, &h), 0);
	assert_int_equal(h.kind, REG_HIT_MACHINE);
	assert_memory_equal(h.id, "00000000000001", 14);
	assert_memory_equal(h.app, "web", 3);
	assert_memory_equal(h.region, "ord", 3);
	ip[15] = 0x77; /* same /112, other host */
	assert_int_equal(reg_find_addr(t, ip, true, &h), -ENOENT);
	assert_int_equal(reg_find_addr(t, ip, false, &h), 0);
	assert_memory_equal(h.id, "00000000000001", 14);
	ip[13] = 9; /* another /112 */
	assert_int_equal(reg_find_addr(t, ip, false, &h), -ENOENT);
	uint8_t peer[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 2, [15] = 2};
	assert_int_equal(reg_find_addr(t, peer, true, &h), 0);
	assert_int_equal(h.kind, REG_HIT_PEER);
	assert_memory_equal(h.id, "laptop", 6);
	reg_txn_abort(t);
}

static void test_peers_and_flycast(void **state)
{
	reg_txn_t *t = rd(*state);
	reg_hit_t h;
	assert_int_equal(reg_walk_peers(t, NET_A, NULL, NULL), 1);
	assert_int_equal(reg_walk_peers(t, NET_B, NULL, NULL), 0);
	assert_int_equal(reg_find_peer(t, NET_A, "laptop", 6, &h), 0);
	assert_memory_equal(h.region, "ams", 3);
	assert_int_equal(reg_find_peer(t, NET_B, "laptop", 6, &h), -ENOENT);
	int n = 0;
	assert_int_equal(reg_walk_flycast(t, NET_A, "web", 3, count_hits, &n), 1);
	assert_int_equal(reg_walk_flycast(t, NET_B, "web", 3, NULL, NULL), 0);
	assert_int_equal(reg_walk_flycast(t, NET_A, "we", 2, NULL, NULL), 0);
	reg_txn_abort(t);
}

/* A peer refused for an address a started Machine holds is left as it was, in the same
 * transaction (an importer tries it again later); its own address with a new region is
 * no conflict. */
static int peer_onto_machine(reg_txn_t *t, void *arg)
{
	(void)arg;
	uint8_t taken[16], own[16];
	reg_hit_t h;
	inet_pton(AF_INET6, "fdaa:0:18:1:1:0:1:2", taken);
	inet_pton(AF_INET6, "fdaa:0:18:2::2", own);
	assert_int_equal(reg_put_peer(t, NET_A, "laptop", taken, "iad"), -EADDRINUSE);
	assert_int_equal(reg_find_peer(t, NET_A, "laptop", 6, &h), 0);
	assert_memory_equal(h.ip, own, 16);
	assert_memory_equal(h.region, "ams", 3);
	/* its address still its own: another peer cannot have it */
	assert_int_equal(reg_put_peer(t, NET_A, "phone", own, "ams"), -EADDRINUSE);
	assert_int_equal(reg_find_peer(t, NET_A, "phone", 5, &h), -ENOENT);
	assert_int_equal(reg_put_peer(t, NET_A, "laptop", own, "ord"), 0);
	assert_int_equal(reg_find_peer(t, NET_A, "laptop", 6, &h), 0);
	assert_memory_equal(h.region, "ord", 3);
	return 0;
}

static void test_a_refused_peer_is_left_as_it_was(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(reg_write(fx->reg, peer_onto_machine, NULL), 0);
}

static void test_app_prefix_does_not_leak(void **state)
{
	/* "we" must not see "web"'s Machines: the separator bounds the range */
	reg_txn_t *t = rd(*state);
	assert_int_equal(reg_walk_app(t, NET_A, "we", 2, NULL, NULL), 0);
	uint32_t n = 1;
	assert_int_equal(reg_count_app(t, NET_A, "we", 2, &n), 0);
	assert_int_equal(n, 0);
	reg_txn_abort(t);
}

typedef struct {
	int from, n;
} many_t;

static int put_many(reg_txn_t *t, void *arg)
{
	many_t *m = arg;
	for (int i = m->from; i < m->from + m->n; i++) {
		char id[16];
		snprintf(id, sizeof(id), "%014x", i);
		reg_meta_t meta[2] = {{"role", "x"}, {"tier", "y"}};
		reg_machine_t mc = {.id = id,
		                    .app = "bulk",
		                    .region = "ord",
		                    .group = "app",
		                    .state = "started",
		                    .net = NET_A,
		                    .meta = meta,
		                    .nmeta = 2};
		uint8_t ip[16] = {0xfd,
		                  0xaa,
		                  0,
		                  0,
		                  0,
		                  0x18,
		                  9,
		                  9,
		                  0,
		                  0,
		                  (uint8_t)(i >> 24),
		                  (uint8_t)(i >> 16),
		                  (uint8_t)(i >> 8),
		                  (uint8_t)i,
		                  0,
		                  2};
		memcpy(mc.ip, ip, 16);
		int rc = reg_put_machine(t, &mc);
		if (rc)
			return rc;
	}
	return 0;
}

typedef struct {
	size_t total, chunks;
	uint8_t last[16];
	bool ordered;
} chunks_t;

static int count_chunk(const uint8_t *ips, size_t n, void *arg)
{
	chunks_t *c = arg;
	for (size_t i = 0; i < n; i++) {
		if (c->total && memcmp(c->last, ips + 16 * i, 16) >= 0)
			c->ordered = false;
		memcpy(c->last, ips + 16 * i, 16);
		c->total++;
	}
	c->chunks++;
	return 0;
}

static void test_map_grows_when_full(void **state)
{
	(void)state;
	char *dir = tmp_new();
	reg_t *reg;
	assert_int_equal(reg_open(&reg, dir, REG_NOSYNC, 256 * 1024), 0);
	size_t before = reg_mapsize(reg);
	many_t m = {0, 20000};
	assert_int_equal(reg_write(reg, put_many, &m), 0);
	assert_true(reg_mapsize(reg) > before);
	reg_txn_t *t;
	assert_int_equal(reg_txn_begin(reg, false, &t), 0);
	assert_int_equal(reg_walk_app(t, NET_A, "bulk", 4, NULL, NULL), 20000);
	/* an address set of 20000 comes a page at a time, in address order, all of it */
	chunks_t c = {.ordered = true};
	assert_int_equal(
	        reg_ips(t, NET_A, REG_SET_APP, "bulk", 4, NULL, 0, NULL, 0, count_chunk, &c),
	        20000);
	assert_int_equal(c.total, 20000);
	assert_true(c.chunks > 1);
	assert_true(c.ordered);
	assert_int_equal(reg_check(t, NULL, NULL), 0);
	reg_txn_abort(t);
	reg_close(reg);
	tmp_free(dir);
}

static void test_read_snapshot_renews_to_newest(void **state)
{
	fx_t *fx = *state;
	reg_t *ro;
	assert_int_equal(reg_open(&ro, fx->dir, REG_RDONLY, 0), 0);
	reg_txn_t *t;
	assert_int_equal(reg_txn_begin(ro, false, &t), 0);
	assert_int_equal(reg_walk_app(t, NET_A, "web", 3, NULL, NULL), 2);
	assert_int_equal(reg_write(fx->reg, stop1, "00000000000001"), 0);
	assert_int_equal(reg_walk_app(t, NET_A, "web", 3, NULL, NULL), 2); /* a snapshot */
	reg_txn_reset(t);
	assert_int_equal(reg_txn_renew(t), 0);
	assert_int_equal(reg_walk_app(t, NET_A, "web", 3, NULL, NULL), 1);
	reg_txn_abort(t);
	reg_close(ro);
}

static int count_machines(const reg_machine_t *m, void *arg)
{
	(void)m;
	(*(int *)arg)++;
	return 0;
}

/* Cursors are renewed on first use in a snapshot: one used, then left unused for a snapshot,
 * then used again must still see the newest state, never an older one. */
static void test_every_cursor_follows_the_newest_snapshot(void **state)
{
	fx_t *fx = *state;
	static const uint8_t m1[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 1, 0, 1, 0, 0, 0, 1, 0, 2};
	reg_t *ro;
	assert_int_equal(reg_open(&ro, fx->dir, REG_RDONLY, 0), 0);
	reg_txn_t *t;
	reg_hit_t hit;
	int n = 0;
	assert_int_equal(reg_txn_begin(ro, false, &t), 0);
	assert_int_equal(reg_ips(t, NET_A, REG_SET_APP, "web", 3, NULL, 0, NULL, 0, NULL, NULL), 2);
	assert_int_equal(reg_find_addr(t, m1, true, &hit), 0);
	/* snapshot 2: only the index and the Machines table are read */
	assert_int_equal(reg_write(fx->reg, stop1, "00000000000001"), 0);
	reg_txn_reset(t);
	assert_int_equal(reg_txn_renew(t), 0);
	assert_int_equal(reg_walk_app(t, NET_A, "web", 3, NULL, NULL), 1);
	assert_true(reg_walk_machines(t, count_machines, &n) > 0);
	/* snapshot 3: the address cursors, unused in snapshot 2, see snapshot 3 */
	assert_int_equal(reg_write(fx->reg, delete_it, "00000000000001"), 0);
	assert_int_equal(reg_write(fx->reg, start3, "00000000000003"), 0);
	reg_txn_reset(t);
	assert_int_equal(reg_txn_renew(t), 0);
	assert_int_equal(reg_ips(t, NET_A, REG_SET_APP, "web", 3, NULL, 0, NULL, 0, NULL, NULL), 2);
	assert_int_equal(reg_ips(t, NET_A, REG_SET_REGION, "web", 3, "ord", 3, NULL, 0, NULL, NULL),
	                 1);
	assert_int_equal(reg_find_addr(t, m1, true, &hit), -ENOENT);
	int after = 0;
	assert_int_equal(reg_walk_machines(t, count_machines, &after), n - 1);
	reg_txn_abort(t);
	reg_close(ro);
}

static void test_reader_adopts_a_map_the_writer_grew(void **state)
{
	(void)state;
	char *dir = tmp_new();
	reg_t *w, *ro;
	assert_int_equal(reg_open(&w, dir, REG_NOSYNC, 256 * 1024), 0);
	assert_int_equal(reg_open(&ro, dir, REG_RDONLY, 256 * 1024), 0);
	reg_txn_t *t;
	assert_int_equal(reg_txn_begin(ro, false, &t), 0);
	reg_txn_reset(t);
	many_t m = {0, 20000};
	assert_int_equal(reg_write(w, put_many, &m), 0); /* grows the file past our map */
	assert_true(reg_mapsize(w) > 256 * 1024);
	assert_int_equal(reg_txn_renew(t), 0);
	assert_int_equal(reg_walk_app(t, NET_A, "bulk", 4, NULL, NULL), 20000);
	assert_true(reg_mapsize(ro) >= reg_mapsize(w));
	reg_txn_abort(t);
	reg_close(ro);
	reg_close(w);
	tmp_free(dir);
}

static void report(const char *msg, void *arg)
{
	(void)msg;
	(*(int *)arg)++;
}

static void test_check_reports_a_stray_index_entry(void **state)
{
	fx_t *fx = *state;
	reg_close(fx->reg);
	/* write behind the API's back, as a bug or a bad restore would */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, fx->dir, 0, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "idx", 0, &dbi), 0);
	uint8_t key[] = {0, 0, 0, 0x18, 'A', 'g', 'h', 'o', 's', 't', 0, 'x'};
	uint8_t val[17] = {0};
	MDB_val k = {sizeof(key), key}, v = {sizeof(val), val};
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	assert_int_equal(reg_open(&fx->reg, fx->dir, 0, 0), 0);
	reg_txn_t *t = rd(fx);
	int n = 0;
	assert_true(reg_check(t, report, &n) > 0);
	assert_true(n > 0);
	reg_txn_abort(t);
}

static void test_readonly_open_of_missing_registry_fails(void **state)
{
	(void)state;
	reg_t *reg;
	assert_int_equal(reg_open(&reg, "/nonexistent/internald", REG_RDONLY, 0), -ENOENT);
}

static int put_pos(reg_txn_t *t, void *arg)
{
	return reg_put_follow(t, arg);
}

static void test_follow_position_commits_with_the_data_and_survives_clear(void **state)
{
	fx_t *fx = *state;
	reg_txn_t *t = rd(fx);
	reg_follow_t got;
	assert_int_equal(reg_get_follow(t, &got), -ENOENT);
	uint64_t before = reg_written_ns(t);
	assert_true(before > 0);
	reg_txn_abort(t);

	reg_follow_t pos = {
	        .bucket = "internal", .stream = "2026-12-01T06:00:00Z", .seq = 42, .applied_ns = 7};
	assert_int_equal(reg_write(fx->reg, put_pos, &pos), 0);
	assert_int_equal(reg_write(fx->reg, clear_it, NULL), 0);
	t = rd(fx);
	assert_int_equal(reg_get_follow(t, &got), 0);
	assert_string_equal(got.bucket, "internal");
	assert_string_equal(got.stream, "2026-12-01T06:00:00Z");
	assert_int_equal(got.seq, 42);
	assert_int_equal(got.applied_ns, 7);
	assert_true(reg_written_ns(t) >= before);
	assert_int_equal(reg_put_follow(t, &pos), -EROFS);
	reg_txn_abort(t);
}

static void test_follow_head_contact_and_synced_round_trip(void **state)
{
	fx_t *fx = *state;
	reg_txn_t *t;
	reg_follow_t got, pos = {.bucket = "internal", .seq = 42, .head = 50, .contact_ns = 9};
	/* the mark a follower writes at its start: not synced yet */
	assert_int_equal(reg_write(fx->reg, put_pos, &pos), 0);
	t = rd(fx);
	assert_int_equal(reg_get_follow(t, &got), 0);
	assert_false(got.synced);
	assert_int_equal(got.head, 50);
	assert_int_equal(got.contact_ns, 9);
	reg_txn_abort(t);
	pos.synced = true;
	assert_int_equal(reg_write(fx->reg, put_pos, &pos), 0);
	t = rd(fx);
	assert_int_equal(reg_get_follow(t, &got), 0);
	assert_true(got.synced);
	assert_int_equal(got.seq, 42);
	reg_txn_abort(t);
}

static bool every_peer(const reg_hit_t *h)
{
	return h->kind == REG_HIT_PEER;
}

static void test_addr_prefix_is_one_org_and_any_nibble_count(void **state)
{
	reg_txn_t *t = rd(*state);
	/* Machine 1 fdaa:0:18:1:1:0:1:2, stopped Machine 3 fdaa:0:18:1:1:0:3:2 (not indexed),
	 * peer fdaa:0:18:2::2, beta's Machine 4 fdaa:0:19:1:1:0:4:2 */
	uint8_t m1[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 1, 0, 1, 0, 0, 0, 1, 0, 2};
	for (unsigned n = 0; n <= 32; n++)
		assert_int_equal(reg_addr_prefix(t, NET_A, m1, n, NULL), 1);
	uint8_t m3[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 1, 0, 1, 0, 0, 0, 3, 0, 2};
	assert_int_equal(reg_addr_prefix(t, NET_A, m3, 27, NULL), 1); /* shared with Machine 1 */
	assert_int_equal(reg_addr_prefix(t, NET_A, m3, 28, NULL), 0); /* ...:0:3 only: stopped */
	uint8_t peer[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 2, [15] = 2};
	assert_int_equal(reg_addr_prefix(t, NET_A, peer, 32, NULL), 1);
	uint8_t odd[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0, 0x30}; /* fdaa:0:18:3..: nothing */
	assert_int_equal(reg_addr_prefix(t, NET_A, odd, 15, NULL), 0);
	assert_int_equal(reg_addr_prefix(t, NET_A, odd, 14, NULL), 1); /* fdaa:0:18:0... */
	/* beta's address counts for beta only, alpha's for alpha only */
	uint8_t b4[16] = {0xfd, 0xaa, 0, 0, 0, 0x19, 0, 1, 0, 1, 0, 0, 0, 4, 0, 2};
	assert_int_equal(reg_addr_prefix(t, NET_B, b4, 32, NULL), 1);
	assert_int_equal(reg_addr_prefix(t, NET_A, b4, 12, NULL), 0);
	assert_int_equal(reg_addr_prefix(t, NET_B, m1, 12, NULL), 0);
	assert_int_equal(reg_addr_prefix(t, 0x77, m1, 4, NULL), 0); /* an org with nothing */
	assert_int_equal(reg_addr_prefix(t, NET_A, m1, 33, NULL), -EINVAL);
	/* what the caller hides does not count: the peer alone under fdaa:0:18:2 */
	assert_int_equal(reg_addr_prefix(t, NET_A, peer, 16, every_peer), 0);
	assert_int_equal(reg_addr_prefix(t, NET_A, peer, 16, NULL), 1);
	assert_int_equal(reg_addr_prefix(t, NET_A, peer, 12, every_peer), 1); /* Machine 1 */
	reg_txn_abort(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_all_index_holds_every_state, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_each_kind_of_change_moves_exactly_its_entries,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_key_only_metadata_set, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_serial_moves_only_with_the_orgs_records, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(
	                test_an_org_is_deleted_only_empty_and_its_serial_goes, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_started_machines_are_in_every_index, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_orgs_are_separate_key_ranges, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_stop_and_start_move_a_machine_out_and_in,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_delete_removes_every_entry, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_generation_counts_every_write, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_failed_write_changes_nothing, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_clear_empties_every_table, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_started_address_cannot_be_taken_twice, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_find_addr_exact_then_slash112, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_peers_and_flycast, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_a_refused_peer_is_left_as_it_was, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_app_prefix_does_not_leak, setup, teardown),
	        cmocka_unit_test(test_map_grows_when_full),
	        cmocka_unit_test(test_reader_adopts_a_map_the_writer_grew),
	        cmocka_unit_test_setup_teardown(test_read_snapshot_renews_to_newest, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_every_cursor_follows_the_newest_snapshot,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_check_reports_a_stray_index_entry, setup,
	                                        teardown),
	        cmocka_unit_test(test_readonly_open_of_missing_registry_fails),
	        cmocka_unit_test_setup_teardown(
	                test_follow_position_commits_with_the_data_and_survives_clear, setup,
	                teardown),
	        cmocka_unit_test_setup_teardown(test_follow_head_contact_and_synced_round_trip,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_addr_prefix_is_one_org_and_any_nibble_count,
	                                        setup, teardown),
	};
	return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
