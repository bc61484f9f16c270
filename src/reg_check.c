/*
 * reg_check.c — reg_check (every index entry and counter against the records) and
 * reg_stats.
 */
#include "reg_impl.h"

#include <stdarg.h>
#include <stdio.h>

/* ---- check
 * ----------------------------------------------------------------------------------------- */

typedef struct {
	reg_txn_t *t;
	void (*report)(const char *, void *);
	void *arg;
	int bad;
	size_t expect_idx, expect_addr, expect_sets, expect_all;
} check_t;

__attribute__((format(printf, 2, 3))) static void bad(check_t *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->bad++;
	if (c->report)
		c->report(msg, c->arg);
}

static int check_machine(const reg_machine_t *m, void *arg)
{
	check_t *c = arg;
	if (m->skip_dns)
		return 0;
	uint8_t want[128];
	size_t wl = idx_value(m, want);
	rkey_t k;
	MDB_val v;
	idx_key(&k, m, 'a');
	c->expect_all++;
	if (raw_get(c->t, DB_ALL, k.b, k.n, &v) || v.mv_size != wl || memcmp(v.mv_data, want, wl))
		bad(c, "machine %s: all-states entry missing or wrong", m->id);
	any_addr_key(&k, m);
	c->expect_all++;
	if (raw_get(c->t, DB_ALL, k.b, k.n, &v) || v.mv_size != strlen(m->region) ||
	    memcmp(v.mv_data, m->region, v.mv_size))
		bad(c, "machine %s: all-states address entry missing or wrong", m->id);
	if (!is_started(m))
		return 0;
	static const char *const what[] = {"app", "region", "group"};
	for (size_t i = 0; i < 2; i++) {
		idx_key(&k, m, set_tags[i]);
		c->expect_idx++;
		if (raw_get(c->t, DB_IDX, k.b, k.n, &v) || v.mv_size != wl ||
		    memcmp(v.mv_data, want, wl))
			bad(c, "machine %s: index entry %s missing or wrong", m->id, what[i]);
	}
	for (size_t i = 0; i < MACHINE_SETS(m); i++) {
		if (!set_key(&k, m, i))
			continue;
		c->expect_sets++;
		MDB_val key = {k.n, k.b}, ip = {16, (void *)m->ip};
		MDB_cursor *sets;
		if (cursor(c->t, DB_SETS, &sets) || mdb_cursor_get(sets, &key, &ip, MDB_GET_BOTH))
			bad(c, "machine %s: %s address set misses it", m->id,
			    i < 3    ? what[i]
			    : i == 3 ? "critical"
			             : "metadata");
	}
	addr_key(&k, m->net, m->ip);
	uint8_t av[3 * (REG_LABEL_MAX + 1)];
	size_t al = addr_value_machine(m, av);
	c->expect_addr++;
	if (raw_get(c->t, DB_ADDR, k.b, k.n, &v) || v.mv_size != al || memcmp(v.mv_data, av, al))
		bad(c, "machine %s: address entry missing or wrong", m->id);
	return 0;
}

static int check_peer(const reg_hit_t *h, void *arg)
{
	check_t *c = arg;
	rkey_t k;
	MDB_val v;
	addr_key(&k, h->net, h->ip);
	c->expect_addr++;
	char name[REG_LABEL_MAX + 1];
	snprintf(name, sizeof(name), "%.*s", h->id_len, h->id);
	if (raw_get(c->t, DB_ADDR, k.b, k.n, &v) || v.mv_size < 1 ||
	    ((uint8_t *)v.mv_data)[0] != 'p')
		bad(c, "peer %s: address entry missing or wrong", name);
	return 0;
}

/* Every counter equals the length of the range it counts; every entry is expected. */
static int check_counters(check_t *c)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_cursor_open(c->t->txn, c->t->reg->dbi[DB_IDX], &cur);
	if (rc)
		return map_err(rc);
	size_t entries = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const uint8_t *kb = k.mv_data;
		int sal = k.mv_size >= 4 ? idx_app(&k, get_be32(kb)) : -1;
		if (sal < 0) {
			bad(c, "index: malformed key");
			continue;
		}
		size_t al = (size_t)sal;
		int tag = kb[5 + al];
		if (tag != 'S' && tag != 'r') {
			entries++;
			continue;
		}
		uint32_t net = get_be32(kb), want = v.mv_size == 4 ? get_be32(v.mv_data) : 0;
		const char *app = (const char *)kb + 4, *region = app + al + 2;
		size_t rl = k.mv_size - 6 - al;
		int got = tag == 'S'
		                  ? reg_walk_app(c->t, net, app, al, NULL, NULL)
		                  : reg_walk_app_region(c->t, net, app, al, region, rl, NULL, NULL);
		char name[2 * REG_LABEL_MAX + 2];
		snprintf(name, sizeof(name), "%.*s%s%.*s", (int)al, app, tag == 'r' ? " " : "",
		         tag == 'r' ? (int)rl : 0, region);
		if (got < 0 || (uint32_t)got != want)
			bad(c, "counter for %s does not match its Machines", name);
		/* the walk moved the shared idx cursor; ours is separate, so go on */
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return map_err(rc);
	if (entries != c->expect_idx)
		bad(c, "index holds entries no started Machine accounts for");
	MDB_stat st;
	if ((rc = mdb_stat(c->t->txn, c->t->reg->dbi[DB_ADDR], &st)))
		return map_err(rc);
	if (st.ms_entries != c->expect_addr)
		bad(c, "address index holds entries no Machine or peer accounts for");
	if ((rc = mdb_stat(c->t->txn, c->t->reg->dbi[DB_SETS], &st)))
		return map_err(rc);
	if (st.ms_entries != c->expect_sets)
		bad(c, "address sets hold addresses no started Machine accounts for");
	return 0;
}

typedef struct {
	const char *region;
	size_t len;
	uint32_t n;
} region_count_t;

static int count_region(const reg_hit_t *h, void *arg)
{
	region_count_t *rc = arg;
	if (h->region_len == rc->len && memcmp(h->region, rc->region, rc->len) == 0)
		rc->n++;
	return 0;
}

/* The all table: every 'q' counter equals its Machines; no entry is unaccounted for. */
static int check_all(check_t *c)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_cursor_open(c->t->txn, c->t->reg->dbi[DB_ALL], &cur);
	if (rc)
		return map_err(rc);
	size_t entries = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const uint8_t *kb = k.mv_data;
		if (k.mv_size < 6 || kb[4] != 'q') {
			entries++;
			continue;
		}
		const char *app = (const char *)kb + 5;
		size_t al = strnlen(app, k.mv_size - 5);
		region_count_t want = {app + al + 1, k.mv_size - 6 - al, 0};
		if (al + 6 > k.mv_size || v.mv_size != 4 ||
		    reg_walk_all_app(c->t, get_be32(kb), app, al, count_region, &want) < 0 ||
		    want.n != get_be32(v.mv_data)) {
			char name[2 * REG_LABEL_MAX + 2];
			snprintf(name, sizeof(name), "%.*s", (int)(k.mv_size - 5), app);
			bad(c, "all-states counter for %s does not match its Machines", name);
		}
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return map_err(rc);
	if (entries != c->expect_all)
		bad(c, "all-states index holds entries no Machine accounts for");
	return 0;
}

int reg_check(reg_txn_t *t, void (*report)(const char *, void *), void *arg)
{
	check_t c = {.t = t, .report = report, .arg = arg};
	int rc = reg_walk_machines(t, check_machine, &c);
	if (rc >= 0)
		rc = reg_walk_all_peers(t, check_peer, &c);
	if (rc >= 0)
		rc = check_counters(&c);
	if (rc >= 0)
		rc = check_all(&c);
	return rc < 0 ? rc : c.bad;
}

static int count_started(const reg_machine_t *m, void *arg)
{
	if (is_started(m))
		(*(size_t *)arg)++;
	return 0;
}

int reg_stats(reg_txn_t *t, reg_stats_t *s)
{
	MDB_stat st[DB_N];
	for (int i = 0; i < DB_N; i++) {
		int rc = mdb_stat(t->txn, t->reg->dbi[i], &st[i]);
		if (rc)
			return map_err(rc);
	}
	MDB_envinfo info;
	mdb_env_info(t->reg->env, &info);
	*s = (reg_stats_t){
	        .generation = reg_generation(t),
	        .orgs = st[DB_ORGS].ms_entries,
	        .machines = st[DB_MACHINES].ms_entries,
	        .peers = st[DB_PEERS].ms_entries,
	        .flycast = st[DB_FLYCAST].ms_entries,
	        .index_entries =
	                st[DB_IDX].ms_entries + st[DB_ADDR].ms_entries + st[DB_SETS].ms_entries,
	        .map_size = info.me_mapsize,
	        .page_size = st[DB_META].ms_psize,
	        .map_used = (info.me_last_pgno + 1) * (size_t)st[DB_META].ms_psize,
	};
	s->regions = st[DB_REGIONS].ms_entries;
	s->index_entries += st[DB_ALL].ms_entries;
	int rc = reg_walk_machines(t, count_started, &s->started);
	return rc < 0 ? rc : 0;
}
