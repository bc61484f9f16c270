/*
 * reg_write.c — the registry's write API: puts and deletes of orgs, Machines, peers,
 * Flycast addresses and regions, the index entries each write keeps in step, org
 * deletion and the follower's position. Only internalctl (and the tests) link it.
 */
#include "reg_impl.h"

#include <stdlib.h>

/* ---- counters and serials ------------------------------------------------------------------- */

/* Adds delta to a counter of db; deletes it at zero. */
static int counter_add(reg_txn_t *t, int db, const rkey_t *k, int delta)
{
	MDB_val v;
	int rc = raw_get(t, db, k->b, k->n, &v);
	uint32_t n = 0;
	if (rc == 0 && v.mv_size == 4)
		n = get_be32(v.mv_data);
	else if (rc && rc != -ENOENT)
		return rc;
	if (delta < 0 && n == 0)
		return -EIO; /* an index that disagrees with its records: reg_check says where */
	n = (uint32_t)((int64_t)n + delta);
	if (n == 0)
		return kdel(t, db, k);
	uint8_t b[4];
	put_be32(b, n);
	return kput(t, db, k, b, 4);
}

/* The org's serial becomes the generation this transaction will commit. */
int touch_org(reg_txn_t *t, uint32_t net)
{
	if (t->touched_any && t->touched == net)
		return 0;
	uint8_t nb[4], gb[8];
	put_be32(nb, net);
	put_be64(gb, reg_generation(t) + 1);
	int rc = raw_put(t, DB_SERIALS, nb, 4, gb, 8);
	if (!rc)
		t->touched_any = true, t->touched = net;
	return rc;
}

static int set_change(reg_txn_t *t, const rkey_t *k, const uint8_t ip[16], bool add)
{
	if (k->overflow)
		return -ENAMETOOLONG;
	MDB_val key = {k->n, (void *)k->b}, val = {16, (void *)ip};
	int rc = add ? mdb_put(t->txn, t->reg->dbi[DB_SETS], &key, &val, MDB_NODUPDATA)
	             : mdb_del(t->txn, t->reg->dbi[DB_SETS], &key, &val);
	return rc == MDB_KEYEXIST ? 0 : map_err(rc);
}

/* The started Machine's entries in idx, sets and addr. */
static int index_machine(reg_txn_t *t, const reg_machine_t *m, bool add)
{
	uint8_t v[128];
	size_t vl = idx_value(m, v);
	rkey_t k;
	int rc;

	addr_key(&k, m->net, m->ip);
	if (add) {
		MDB_val cur;
		rc = raw_get(t, DB_ADDR, k.b, k.n, &cur);
		if (rc == 0)
			return -EADDRINUSE;
		if (rc != -ENOENT)
			return rc;
		uint8_t av[3 * (REG_LABEL_MAX + 1)];
		if ((rc = kput(t, DB_ADDR, &k, av, addr_value_machine(m, av))))
			return rc;
	} else if ((rc = kdel(t, DB_ADDR, &k)) && rc != -ENOENT) {
		return rc;
	}

	for (size_t i = 0; i < 2; i++) {
		idx_key(&k, m, set_tags[i]);
		rc = add ? kput(t, DB_IDX, &k, v, vl) : kdel(t, DB_IDX, &k);
		if (rc && !(rc == -ENOENT && !add))
			return rc;
	}
	for (size_t i = 0; i < MACHINE_SETS(m); i++) {
		if (!set_key(&k, m, i))
			continue;
		if ((rc = set_change(t, &k, m->ip, add)) && !(rc == -ENOENT && !add))
			return rc;
	}
	idx_key(&k, m, 'S');
	if ((rc = counter_add(t, DB_IDX, &k, add ? 1 : -1)))
		return rc;
	idx_key(&k, m, 'r');
	return counter_add(t, DB_IDX, &k, add ? 1 : -1);
}

/* The entries of a Machine in any state in the all table. */
static int index_any(reg_txn_t *t, const reg_machine_t *m, bool add)
{
	uint8_t v[128];
	size_t vl = idx_value(m, v);
	rkey_t k;
	int rc;
	idx_key(&k, m, 'a');
	if ((rc = add ? kput(t, DB_ALL, &k, v, vl) : kdel(t, DB_ALL, &k)) &&
	    !(rc == -ENOENT && !add))
		return rc;
	any_addr_key(&k, m);
	if ((rc = add ? kput(t, DB_ALL, &k, m->region, strlen(m->region)) : kdel(t, DB_ALL, &k)) &&
	    !(rc == -ENOENT && !add))
		return rc;
	idx_key(&k, m, 'q');
	return counter_add(t, DB_ALL, &k, add ? 1 : -1);
}

/* Whether two records of a Machine have the same entries in the all table... */
static bool same_any(const reg_machine_t *a, const reg_machine_t *b)
{
	return a->net == b->net && memcmp(a->ip, b->ip, 16) == 0 && strcmp(a->id, b->id) == 0 &&
	       strcmp(a->app, b->app) == 0 && strcmp(a->region, b->region) == 0;
}

/* ... and the same entries in idx, sets and addr while started. */
static bool same_started(const reg_machine_t *a, const reg_machine_t *b)
{
	if (!same_any(a, b) || strcmp(a->group, b->group) != 0 || a->nmeta != b->nmeta ||
	    is_critical(a) != is_critical(b))
		return false;
	for (size_t i = 0; i < a->nmeta; i++)
		if (strcmp(a->meta[i].key, b->meta[i].key) != 0 ||
		    strcmp(a->meta[i].value, b->meta[i].value) != 0)
			return false;
	return true;
}

/* -EADDRINUSE when record m would be started at an address another Machine or a peer
 * holds, checked before anything is written: a refused record leaves the transaction as
 * it was (jsonl tries it again once the rest of its file has moved addresses). */
static int address_free(reg_txn_t *t, const reg_machine_t *old, const reg_machine_t *m)
{
	if (m->skip_dns || !is_started(m))
		return 0;
	if (old && !old->skip_dns && is_started(old) && old->net == m->net &&
	    memcmp(old->ip, m->ip, 16) == 0)
		return 0; /* its own address already */
	rkey_t k;
	MDB_val cur;
	addr_key(&k, m->net, m->ip);
	int rc = raw_get(t, DB_ADDR, k.b, k.n, &cur);
	return rc == -ENOENT ? 0 : rc ? rc : -EADDRINUSE;
}

/* Moves a Machine's index entries from record old to record m (either NULL: none),
 * rewriting only the parts that differ: a start, a stop or a new group or metadata
 * leaves the all table as it is, and each entry left alone is a B-tree page the commit
 * neither copies nor writes (the follower's rate into a large registry is mostly that).
 * Old entries go first, so m may take old's address. */
int reindex(reg_txn_t *t, const reg_machine_t *old, const reg_machine_t *m)
{
	bool old_any = old && !old->skip_dns, new_any = m && !m->skip_dns;
	bool old_up = old_any && is_started(old), new_up = new_any && is_started(m);
	bool keep_any = old_any && new_any && same_any(old, m);
	bool keep_up = old_up && new_up && same_started(old, m);
	int rc;
	if (old_up && !keep_up && (rc = index_machine(t, old, false)))
		return rc;
	if (old_any && !keep_any && (rc = index_any(t, old, false)))
		return rc;
	if (new_any && !keep_any && (rc = index_any(t, m, true)))
		return rc;
	return new_up && !keep_up ? index_machine(t, m, true) : 0;
}

/* ---- write API ---------------------------------------------------------------------------- */

static bool label_ok(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= REG_LABEL_MAX && !memchr(s, 0, n);
}

int reg_put_org(reg_txn_t *t, const char *slug, uint32_t net)
{
	size_t len = strlen(slug);
	if (!label_ok(slug))
		return -ENAMETOOLONG;
	uint8_t nb[4];
	put_be32(nb, net);
	MDB_val v;
	int rc = raw_get(t, DB_ORGS, slug, len, &v);
	if (rc == 0)
		return v.mv_size == 4 && get_be32(v.mv_data) == net ? 0 : -EEXIST;
	if (rc != -ENOENT)
		return rc;
	rc = raw_get(t, DB_ORGNETS, nb, 4, &v);
	if (rc == 0)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	if ((rc = raw_put(t, DB_ORGS, slug, len, nb, 4)) || (rc = touch_org(t, net)))
		return rc;
	return raw_put(t, DB_ORGNETS, nb, 4, slug, len);
}

int reg_put_machine(reg_txn_t *t, const reg_machine_t *m)
{
	uint8_t buf[MACHINE_ENC_MAX];
	size_t len;
	int rc;
	if (!label_ok(m->id) || !label_ok(m->app) || !label_ok(m->region) || !label_ok(m->group))
		return -ENAMETOOLONG;
	for (size_t i = 0; i < m->nmeta && i < REG_META_MAX; i++)
		if (!label_ok(m->meta[i].key) || strlen(m->meta[i].value) > REG_META_VALUE_MAX)
			return -ENAMETOOLONG;
	if ((rc = enc_machine(m, buf, sizeof(buf), &len)))
		return rc;

	MDB_val k = {strlen(m->id), (void *)m->id}, cur;
	rc = map_err(mdb_get(t->txn, t->reg->dbi[DB_MACHINES], &k, &cur));
	if (rc == 0 && cur.mv_size == len && memcmp(cur.mv_data, buf, len) == 0)
		return 0; /* unchanged: no index churn, and the org's serial stays */
	reg_machine_buf_t *old = NULL;
	if (rc == 0) {
		if (!(old = malloc(sizeof(*old))))
			return -ENOMEM;
		if ((rc = dec_machine(&k, &cur, old)))
			goto out;
	} else if (rc != -ENOENT) {
		return rc;
	}
	if ((rc = address_free(t, old ? &old->m : NULL, m)) ||
	    (old && old->m.net != m->net && (rc = touch_org(t, old->m.net))))
		goto out;
	if (!(rc = raw_put(t, DB_MACHINES, m->id, strlen(m->id), buf, len)) &&
	    !(rc = touch_org(t, m->net)))
		rc = reindex(t, old ? &old->m : NULL, m);
out:
	free(old);
	return rc;
}

int reg_set_state(reg_txn_t *t, const char *id, const char *state)
{
	reg_machine_buf_t b;
	int rc = reg_get_machine(t, id, &b);
	if (rc)
		return rc;
	if (strlen(state) > REG_STATE_MAX)
		return -ENAMETOOLONG;
	if (strcmp(b.state, state) == 0)
		return 0;
	b.m.state = state;
	return reg_put_machine(t, &b.m);
}

int reg_delete_machine(reg_txn_t *t, const char *id)
{
	reg_machine_buf_t b;
	int rc = reg_get_machine(t, id, &b);
	if (rc)
		return rc;
	if ((rc = reindex(t, &b.m, NULL)) || (rc = touch_org(t, b.m.net)))
		return rc;
	return raw_del(t, DB_MACHINES, id, strlen(id));
}

int reg_delete_peer(reg_txn_t *t, uint32_t net, const char *name)
{
	rkey_t k, ak;
	MDB_val v;
	peer_key(&k, net, name, strlen(name));
	int rc = k.overflow ? -ENAMETOOLONG : raw_get(t, DB_PEERS, k.b, k.n, &v);
	if (rc)
		return rc;
	if (v.mv_size < 17)
		return -EIO;
	addr_key(&ak, net, v.mv_data);
	if ((rc = kdel(t, DB_ADDR, &ak)) && rc != -ENOENT)
		return rc;
	if ((rc = touch_org(t, net)))
		return rc;
	return kdel(t, DB_PEERS, &k);
}

int reg_put_peer(reg_txn_t *t, uint32_t net, const char *name, const uint8_t ip[16],
                 const char *region)
{
	if (!label_ok(name) || !label_ok(region))
		return -ENAMETOOLONG;
	size_t nl = strlen(name), rl = strlen(region), n = 0;
	uint8_t av[2 * REG_LABEL_MAX + 4], pv[16 + REG_LABEL_MAX + 1];
	memcpy(pv, ip, 16);
	memcpy(pv + 16, region, rl);
	rkey_t k;
	MDB_val cur;
	peer_key(&k, net, name, nl);
	if (!k.overflow && raw_get(t, DB_PEERS, k.b, k.n, &cur) == 0 && cur.mv_size == 16 + rl &&
	    memcmp(cur.mv_data, pv, 16 + rl) == 0)
		return 0; /* unchanged */
	/* the address free or this peer's own, checked before anything is written: a refused
	 * peer leaves the transaction as it was (jsonl tries it again, as a Machine) */
	addr_key(&k, net, ip);
	int rc = raw_get(t, DB_ADDR, k.b, k.n, &cur);
	if (rc == 0 && !(cur.mv_size > nl + 1 && ((const uint8_t *)cur.mv_data)[0] == 'p' &&
	                 memcmp((const uint8_t *)cur.mv_data + 1, name, nl) == 0 &&
	                 ((const uint8_t *)cur.mv_data)[1 + nl] == 0))
		return -EADDRINUSE;
	if (rc && rc != -ENOENT)
		return rc;
	if ((rc = reg_delete_peer(t, net, name)) && rc != -ENOENT)
		return rc;
	av[n++] = 'p';
	memcpy(av + n, name, nl), n += nl, av[n++] = 0;
	memcpy(av + n, region, rl), n += rl;
	if ((rc = kput(t, DB_ADDR, &k, av, n)) || (rc = touch_org(t, net)))
		return rc;
	peer_key(&k, net, name, nl);
	return kput(t, DB_PEERS, &k, pv, 16 + rl);
}

int reg_put_flycast(reg_txn_t *t, uint32_t net, const char *app, const uint8_t ip[16])
{
	if (!label_ok(app))
		return -ENAMETOOLONG;
	rkey_t k;
	MDB_val cur;
	flycast_key(&k, net, app, strlen(app), ip);
	if (!k.overflow && raw_get(t, DB_FLYCAST, k.b, k.n, &cur) == 0)
		return 0;
	int rc = touch_org(t, net);
	return rc ? rc : kput(t, DB_FLYCAST, &k, "", 0);
}

int reg_delete_flycast(reg_txn_t *t, uint32_t net, const char *app, const uint8_t ip[16])
{
	rkey_t k;
	flycast_key(&k, net, app, strlen(app), ip);
	int rc = kdel(t, DB_FLYCAST, &k);
	return rc ? rc : touch_org(t, net);
}

int reg_clear(reg_txn_t *t)
{
	for (int i = 0; i < DB_N; i++) {
		if (i == DB_META)
			continue;
		int rc = mdb_drop(t->txn, t->reg->dbi[i], 0);
		if (rc)
			return map_err(rc);
	}
	t->touched_any = false;
	return 0;
}

/* code -> f64 BE lat | f64 BE lon | name */
static uint64_t dbits(double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	return u;
}

int reg_put_region(reg_txn_t *t, const char *code, const char *name, double lat, double lon)
{
	size_t nl = strlen(name);
	if (!label_ok(code) || nl > REG_REGION_NAME_MAX)
		return -ENAMETOOLONG;
	if (!(lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180))
		return -EINVAL;
	uint8_t v[16 + REG_REGION_NAME_MAX];
	put_be64(v, dbits(lat));
	put_be64(v + 8, dbits(lon));
	memcpy(v + 16, name, nl);
	return raw_put(t, DB_REGIONS, code, strlen(code), v, 16 + nl);
}

int reg_delete_region(reg_txn_t *t, const char *code)
{
	if (!label_ok(code))
		return -ENOENT;
	return raw_del(t, DB_REGIONS, code, strlen(code));
}

/* ---- the follower's position ----------------------------------------------------------------- */

int reg_put_follow(reg_txn_t *t, const reg_follow_t *f)
{
	if (!t->write)
		return -EROFS;
	size_t bl = strnlen(f->bucket, sizeof f->bucket), sl = strnlen(f->stream, sizeof f->stream);
	if (bl == sizeof f->bucket || sl == sizeof f->stream)
		return -ENAMETOOLONG;
	/* seq, applied_ns, the two lengths, the two strings, then (since the follower
	 * records its lag) head, contact_ns and the synced flag */
	uint8_t b[18 + sizeof f->bucket + sizeof f->stream + 17];
	put_be64(b, f->seq);
	put_be64(b + 8, f->applied_ns);
	b[16] = (uint8_t)bl;
	b[17] = (uint8_t)sl;
	memcpy(b + 18, f->bucket, bl);
	memcpy(b + 18 + bl, f->stream, sl);
	put_be64(b + 18 + bl + sl, f->head);
	put_be64(b + 26 + bl + sl, f->contact_ns);
	b[34 + bl + sl] = f->synced;
	MDB_val k = {6, "follow"}, v = {35 + bl + sl, b};
	return map_err(mdb_put(t->txn, t->reg->dbi[DB_META], &k, &v, 0));
}

/* ---- org deletion (the follower: a KV delete of org.<slug>) -------------------------------- */

typedef struct {
	uint32_t net;
	bool found;
} org_find_t;

static int org_machine_fn(const reg_machine_t *m, void *arg)
{
	org_find_t *f = arg;
	return f->found = m->net == f->net;
}

static int any_hit_fn(const reg_hit_t *h, void *arg)
{
	(void)h, (void)arg;
	return 1;
}

int reg_delete_org(reg_txn_t *t, const char *slug)
{
	org_find_t f = {0};
	uint8_t nb[4];
	rkey_t k;
	int rc = reg_org_net(t, slug, strlen(slug), &f.net);
	if (rc)
		return rc;
	/* peers and Flycast addresses are an org range; Machines (stopped ones too) are
	 * keyed by id and walked whole: an org is deleted rarely */
	key_init(&k, f.net, 0);
	if ((rc = walk_prefix(t, DB_PEERS, &k, hit_from_peer, any_hit_fn, NULL)) ||
	    (rc = walk_prefix(t, DB_FLYCAST, &k, hit_from_flycast, any_hit_fn, NULL)))
		return rc > 0 ? -ENOTEMPTY : rc;
	if ((rc = reg_walk_machines(t, org_machine_fn, &f)) < 0)
		return rc;
	if (f.found)
		return -ENOTEMPTY;
	put_be32(nb, f.net);
	if ((rc = raw_del(t, DB_ORGS, slug, strlen(slug))))
		return rc;
	/* its serial goes too: a network with no org answers serial 0, as one never written */
	if ((rc = raw_del(t, DB_SERIALS, nb, 4)) && rc != -ENOENT)
		return rc;
	if (t->touched_any && t->touched == f.net)
		t->touched_any = false; /* an org made again in this transaction gets a serial */
	return raw_del(t, DB_ORGNETS, nb, 4);
}
