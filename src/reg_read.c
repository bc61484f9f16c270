/*
 * reg_read.c — the registry's read path: point reads and walks, allocation-free, all
 * that internald needs (with reg_core.c and reg_codec.c).
 */
#include "reg_impl.h"

int reg_get_machine(reg_txn_t *t, const char *id, reg_machine_buf_t *out)
{
	MDB_val k = {strlen(id), (void *)id}, v;
	if (k.mv_size == 0 || k.mv_size > REG_LABEL_MAX)
		return -ENOENT;
	int rc = map_err(mdb_get(t->txn, t->reg->dbi[DB_MACHINES], &k, &v));
	return rc ? rc : dec_machine(&k, &v, out);
}

int reg_get_region(reg_txn_t *t, const char *code, size_t len, reg_region_t *out)
{
	if (len == 0 || len > REG_LABEL_MAX)
		return -ENOENT;
	/* the snapshot's cursor, not mdb_get: nearest asks once per region of the app, and
	 * a cursor set up once per batch is cheaper than one set up per lookup */
	MDB_cursor *c;
	MDB_val k = {len, (void *)code}, v;
	int rc = cursor(t, DB_REGIONS, &c);
	if (rc)
		return rc;
	rc = map_err(mdb_cursor_get(c, &k, &v, MDB_SET_KEY));
	return rc ? rc : region_from(&k, &v, out);
}

int reg_walk_regions(reg_txn_t *t, reg_region_fn fn, void *arg)
{
	MDB_cursor *c;
	int n = 0, rc = cursor(t, DB_REGIONS, &c);
	if (rc)
		return rc;
	MDB_val k, v;
	reg_region_t r;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if ((rc = region_from(&k, &v, &r)))
			return rc;
		n++;
		if (fn(&r, arg))
			return n;
	}
	return rc == MDB_NOTFOUND ? n : map_err(rc);
}

/* ---- point reads ---------------------------------------------------------------------------- */

uint32_t reg_org_serial(reg_txn_t *t, uint32_t net)
{
	uint8_t nb[4];
	MDB_val v;
	put_be32(nb, net);
	if (raw_get(t, DB_SERIALS, nb, 4, &v) || v.mv_size != 8)
		return 0;
	return (uint32_t)get_be64(v.mv_data);
}

int reg_org_net(reg_txn_t *t, const char *slug, size_t len, uint32_t *net)
{
	MDB_val v;
	if (len == 0 || len > REG_LABEL_MAX)
		return -ENOENT;
	int rc = raw_get(t, DB_ORGS, slug, len, &v);
	if (rc)
		return rc;
	if (v.mv_size != 4)
		return -EIO;
	*net = get_be32(v.mv_data);
	return 0;
}

int reg_org_slug(reg_txn_t *t, uint32_t net, char *buf, size_t cap)
{
	uint8_t nb[4];
	MDB_val v;
	put_be32(nb, net);
	int rc = raw_get(t, DB_ORGNETS, nb, 4, &v);
	if (rc)
		return rc;
	if (v.mv_size >= cap)
		return -ENOSPC;
	memcpy(buf, v.mv_data, v.mv_size);
	buf[v.mv_size] = '\0';
	return 0;
}

/* ---- walks ------------------------------------------------------------------------------------
 */

/* Walks every key of db starting with prefix; decode turns entries into hits. */
int walk_prefix(reg_txn_t *t, int db, const rkey_t *prefix, decode_fn decode, reg_walk_fn fn,
                void *arg)
{
	MDB_cursor *c;
	int n = 0, rc;
	if (prefix->overflow)
		return 0;
	if ((rc = cursor(t, db, &c)))
		return rc;
	MDB_val k = {prefix->n, (void *)prefix->b}, v;
	rc = mdb_cursor_get(c, &k, &v, prefix->n ? MDB_SET_RANGE : MDB_FIRST);
	while (rc == 0 && k.mv_size >= prefix->n && memcmp(k.mv_data, prefix->b, prefix->n) == 0) {
		reg_hit_t h;
		if ((rc = decode(&k, &v, &h)))
			return rc;
		n++;
		if (fn && fn(&h, arg))
			return n;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	return rc == 0 || rc == MDB_NOTFOUND ? n : map_err(rc);
}

static int walk_idx(reg_txn_t *t, const rkey_t *k, reg_walk_fn fn, void *arg)
{
	return walk_prefix(t, DB_IDX, k, hit_from_idx, fn, arg);
}

int reg_walk_app(reg_txn_t *t, uint32_t net, const char *app, size_t al, reg_walk_fn fn, void *arg)
{
	rkey_t k;
	app_key(&k, net, app, al, 'A');
	return walk_idx(t, &k, fn, arg);
}

int reg_walk_all_app(reg_txn_t *t, uint32_t net, const char *app, size_t al, reg_walk_fn fn,
                     void *arg)
{
	rkey_t k;
	key_init(&k, net, 'a');
	key_str(&k, app, al, true);
	return walk_prefix(t, DB_ALL, &k, hit_from_all, fn, arg);
}

int reg_walk_all_org(reg_txn_t *t, uint32_t net, reg_walk_fn fn, void *arg)
{
	rkey_t k;
	key_init(&k, net, 'a');
	return walk_prefix(t, DB_ALL, &k, hit_from_all, fn, arg);
}

int reg_walk_app_region(reg_txn_t *t, uint32_t net, const char *app, size_t al, const char *region,
                        size_t rl, reg_walk_fn fn, void *arg)
{
	rkey_t k;
	app_key(&k, net, app, al, 'R');
	key_str(&k, region, rl, true);
	return walk_idx(t, &k, fn, arg);
}

int reg_ips(reg_txn_t *t, uint32_t net, int kind, const char *app, size_t al, const char *sub,
            size_t sl, const char *val, size_t vl, reg_ips_fn fn, void *arg)
{
	rkey_t k;
	app_key(&k, net, app, al, kind);
	if (kind != REG_SET_APP)
		key_str(&k, sub, sl, kind == REG_SET_META);
	if (kind == REG_SET_META)
		key_str(&k, val, vl, false);
	if (k.overflow)
		return 0;
	MDB_cursor *c;
	int rc = cursor(t, DB_SETS, &c);
	if (rc)
		return rc;
	MDB_val key = {k.n, k.b}, v;
	rc = mdb_cursor_get(c, &key, &v, MDB_SET);
	if (rc == MDB_NOTFOUND)
		return 0;
	size_t count = 0;
	if (rc || (rc = mdb_cursor_count(c, &count)))
		return map_err(rc);
	if (!fn)
		return (int)count;
	for (rc = mdb_cursor_get(c, &key, &v, MDB_GET_MULTIPLE); rc == 0;
	     rc = mdb_cursor_get(c, &key, &v, MDB_NEXT_MULTIPLE))
		if (fn(v.mv_data, v.mv_size / 16, arg))
			return (int)count;
	return rc == MDB_NOTFOUND ? (int)count : map_err(rc);
}

/* The app of an idx key of org net (net app \0 tag ...): its length, or -1 when the key
 * is another org's or malformed. */
int idx_app(const MDB_val *k, uint32_t net)
{
	const uint8_t *kb = k->mv_data;
	if (k->mv_size < 7 || get_be32(kb) != net)
		return -1;
	const uint8_t *nul = memchr(kb + 4, 0, k->mv_size - 5);
	return nul && nul > kb + 4 ? (int)(nul - kb - 4) : -1;
}

/* Walks the apps of org net in idx: at each, fn(app, len, c, k, v, arg) with the cursor
 * on the app's first key (k, v); fn leaves the cursor anywhere inside the app's keys and
 * returns 0 to go on to the next app (one seek past "app \0"), > 0 to stop (the walk
 * returns n), < 0 an error. */
typedef int (*app_fn)(const char *app, size_t len, MDB_cursor *c, MDB_val *k, MDB_val *v, int *n,
                      void *arg);
static int walk_idx_apps(reg_txn_t *t, uint32_t net, app_fn fn, void *arg)
{
	MDB_cursor *c;
	int n = 0, rc = cursor(t, DB_IDX, &c);
	if (rc)
		return rc;
	rkey_t at;
	key_init(&at, net, 0);
	MDB_val k = {at.n, at.b}, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0) {
		int al = idx_app(&k, net);
		if (al < 0)
			break;
		/* fn may move the cursor: the app is copied into the next seek's key first */
		key_init(&at, net, 0);
		key_put(&at, (const uint8_t *)k.mv_data + 4, (size_t)al);
		key_put(&at, "\1", 1); /* past every "app \0 ..." key, before the next app */
		int r = fn((const char *)at.b + 4, (size_t)al, c, &k, &v, &n, arg);
		if (r)
			return r < 0 ? r : n;
		k = (MDB_val){at.n, at.b};
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	}
	return rc == 0 || rc == MDB_NOTFOUND ? n : map_err(rc);
}

typedef struct {
	uint32_t net;
	reg_walk_fn fn;
	void *arg;
} org_walk_t;

/* Every 'A' entry of the app, the cursor on its first key ('A' sorts first). */
static int org_app(const char *app, size_t al, MDB_cursor *c, MDB_val *k, MDB_val *v, int *n,
                   void *arg)
{
	org_walk_t *w = arg;
	int rc = 0;
	while (rc == 0 && idx_app(k, w->net) == (int)al &&
	       ((const uint8_t *)k->mv_data)[5 + al] == 'A' &&
	       memcmp((const uint8_t *)k->mv_data + 4, app, al) == 0) {
		reg_hit_t h;
		if ((rc = hit_from_idx(k, v, &h)))
			return rc;
		(*n)++;
		if (w->fn && w->fn(&h, w->arg))
			return 1;
		rc = mdb_cursor_get(c, k, v, MDB_NEXT);
	}
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : map_err(rc);
}

int reg_walk_org(reg_txn_t *t, uint32_t net, reg_walk_fn fn, void *arg)
{
	org_walk_t w = {net, fn, arg};
	return walk_idx_apps(t, net, org_app, &w);
}

int reg_walk_peers(reg_txn_t *t, uint32_t net, reg_walk_fn fn, void *arg)
{
	rkey_t k;
	key_init(&k, net, 0);
	return walk_prefix(t, DB_PEERS, &k, hit_from_peer, fn, arg);
}

int reg_find_peer(reg_txn_t *t, uint32_t net, const char *name, size_t len, reg_hit_t *hit)
{
	rkey_t k;
	peer_key(&k, net, name, len);
	if (k.overflow || len == 0)
		return -ENOENT;
	MDB_val key = {k.n, k.b}, v;
	int rc = map_err(mdb_get(t->txn, t->reg->dbi[DB_PEERS], &key, &v));
	return rc ? rc : hit_from_peer(&key, &v, hit);
}

int reg_walk_flycast(reg_txn_t *t, uint32_t net, const char *app, size_t al, reg_walk_fn fn,
                     void *arg)
{
	rkey_t k;
	flycast_key(&k, net, app, al, NULL);
	return walk_prefix(t, DB_FLYCAST, &k, hit_from_flycast, fn, arg);
}

/* Counters: net 'S' app, net 'r' app \0 region. */
static int walk_names(reg_txn_t *t, int db, const rkey_t *prefix, reg_name_fn fn, void *arg)
{
	MDB_cursor *c;
	int n = 0, rc = cursor(t, db, &c);
	if (rc)
		return rc;
	MDB_val k = {prefix->n, (void *)prefix->b}, v;
	rc = prefix->overflow ? MDB_NOTFOUND : mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size > prefix->n && memcmp(k.mv_data, prefix->b, prefix->n) == 0) {
		if (v.mv_size != 4)
			return -EIO;
		n++;
		if (fn && fn((const char *)k.mv_data + prefix->n, k.mv_size - prefix->n,
		             get_be32(v.mv_data), arg))
			return n;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	return rc == 0 || rc == MDB_NOTFOUND ? n : map_err(rc);
}

typedef struct {
	reg_txn_t *t;
	uint32_t net;
	reg_name_fn fn;
	void *arg;
} apps_walk_t;

/* The app and its 'S' counter (a point read beside the walk's cursor). */
static int apps_app(const char *app, size_t al, MDB_cursor *c, MDB_val *k, MDB_val *v, int *n,
                    void *arg)
{
	apps_walk_t *w = arg;
	(void)c, (void)k, (void)v;
	uint32_t count;
	rkey_t ck;
	app_key(&ck, w->net, app, al, 'S');
	MDB_val cv;
	int rc = raw_get(w->t, DB_IDX, ck.b, ck.n, &cv);
	if (rc == -ENOENT)
		return 0; /* keys without a counter: reg_check reports them */
	if (rc || cv.mv_size != 4)
		return rc ? rc : -EIO;
	count = get_be32(cv.mv_data);
	(*n)++;
	return w->fn && w->fn(app, al, count, w->arg) ? 1 : 0;
}

int reg_walk_apps(reg_txn_t *t, uint32_t net, reg_name_fn fn, void *arg)
{
	apps_walk_t w = {t, net, fn, arg};
	return walk_idx_apps(t, net, apps_app, &w);
}

int reg_walk_app_regions(reg_txn_t *t, uint32_t net, const char *app, size_t al, reg_name_fn fn,
                         void *arg)
{
	rkey_t k;
	app_key(&k, net, app, al, 'r');
	return walk_names(t, DB_IDX, &k, fn, arg);
}

int reg_walk_all_app_regions(reg_txn_t *t, uint32_t net, const char *app, size_t al, reg_name_fn fn,
                             void *arg)
{
	rkey_t k;
	key_init(&k, net, 'q');
	key_str(&k, app, al, true);
	return walk_names(t, DB_ALL, &k, fn, arg);
}

int reg_has_meta(reg_txn_t *t, uint32_t net, const char *app, size_t al)
{
	rkey_t k;
	app_key(&k, net, app, al, 'K');
	if (k.overflow)
		return 0;
	MDB_cursor *c;
	int rc = cursor(t, DB_SETS, &c);
	if (rc)
		return rc;
	MDB_val key = {k.n, k.b}, v;
	rc = mdb_cursor_get(c, &key, &v, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return map_err(rc);
	return key.mv_size > k.n && memcmp(key.mv_data, k.b, k.n) == 0;
}

static int get_counter(reg_txn_t *t, const rkey_t *k, uint32_t *count)
{
	MDB_val v;
	*count = 0;
	int rc = k->overflow ? -ENOENT : raw_get(t, DB_IDX, k->b, k->n, &v);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if (v.mv_size != 4)
		return -EIO;
	*count = get_be32(v.mv_data);
	return 0;
}

int reg_count_critical(reg_txn_t *t, uint32_t net, const char *app, size_t al, uint32_t *count)
{
	int n = reg_ips(t, net, 'C', app, al, "", 0, "", 0, NULL, NULL);
	*count = n > 0 ? (uint32_t)n : 0;
	return n < 0 ? n : 0;
}

/* A point read in addr (no cursor): safe inside a walk of the sets. */
int reg_critical(reg_txn_t *t, uint32_t net, const char *app, size_t al, const uint8_t ip[16])
{
	rkey_t k;
	MDB_val v;
	addr_key(&k, net, ip);
	int rc = raw_get(t, DB_ADDR, k.b, k.n, &v);
	if (rc)
		return rc == -ENOENT ? 0 : rc;
	const uint8_t *b = v.mv_data;
	return v.mv_size > al + 1 && b[0] == 'M' && memcmp(b + 1, app, al) == 0 && b[al + 1] == 0;
}

int reg_count_app(reg_txn_t *t, uint32_t net, const char *app, size_t al, uint32_t *count)
{
	rkey_t k;
	app_key(&k, net, app, al, 'S');
	return get_counter(t, &k, count);
}

int reg_count_app_region(reg_txn_t *t, uint32_t net, const char *app, size_t al, const char *region,
                         size_t rl, uint32_t *count)
{
	rkey_t k;
	app_key(&k, net, app, al, 'r');
	key_str(&k, region, rl, false);
	return get_counter(t, &k, count);
}

int reg_find_vm(reg_txn_t *t, uint32_t net, const char *app, size_t al, const char *id, size_t il,
                reg_hit_t *hit)
{
	rkey_t k;
	app_key(&k, net, app, al, 'A');
	key_str(&k, id, il, false);
	if (k.overflow || il == 0)
		return -ENOENT;
	MDB_val key = {k.n, k.b}, v;
	int rc = map_err(mdb_get(t->txn, t->reg->dbi[DB_IDX], &key, &v));
	return rc ? rc : hit_from_idx(&key, &v, hit);
}

static uint32_t net_of(const uint8_t ip[16])
{
	return get_be32(ip + 2);
}

int reg_find_addr(reg_txn_t *t, const uint8_t ip[16], bool exact, reg_hit_t *hit)
{
	rkey_t k;
	addr_key(&k, net_of(ip), ip);
	MDB_val key = {k.n, k.b}, v;
	int rc = mdb_get(t->txn, t->reg->dbi[DB_ADDR], &key, &v);
	if (rc == 0)
		return hit_from_addr(&key, &v, hit);
	if (rc != MDB_NOTFOUND || exact)
		return map_err(rc);
	k.b[k.n - 2] = k.b[k.n - 1] = 0; /* the start of ip's /112 */
	key = (MDB_val){k.n, k.b};
	MDB_cursor *c;
	if ((rc = cursor(t, DB_ADDR, &c)))
		return rc;
	rc = mdb_cursor_get(c, &key, &v, MDB_SET_RANGE);
	if (rc)
		return map_err(rc);
	if (key.mv_size != 20 || memcmp(key.mv_data, k.b, 18) != 0)
		return -ENOENT;
	return hit_from_addr(&key, &v, hit);
}

int reg_find_any_addr(reg_txn_t *t, const uint8_t ip[16], reg_hit_t *hit)
{
	rkey_t k;
	key_init(&k, net_of(ip), 'i');
	key_put(&k, ip, 16);
	MDB_cursor *c;
	int rc = cursor(t, DB_ALL, &c);
	if (rc)
		return rc;
	for (int pass = 0; pass < 2; pass++) {
		/* the exact address first, then the start of its /112 */
		size_t match = pass ? k.n - 2 : k.n;
		if (pass)
			k.b[k.n - 2] = k.b[k.n - 1] = 0;
		MDB_val key = {k.n, k.b}, v;
		rc = mdb_cursor_get(c, &key, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc)
			return map_err(rc);
		if (key.mv_size <= 21 || memcmp(key.mv_data, k.b, match) != 0)
			continue;
		const uint8_t *kb = key.mv_data;
		*hit = (reg_hit_t){
		        .kind = REG_HIT_MACHINE,
		        .net = get_be32(kb),
		        .ip = kb + 5,
		        .id = (const char *)kb + 21,
		        .id_len = (uint8_t)(key.mv_size - 21),
		        .region = v.mv_data,
		        .region_len = (uint8_t)v.mv_size,
		};
		return 0;
	}
	return -ENOENT;
}

/* ---- whole-registry walks
 * ------------------------------------------------------------------------ */

int reg_walk_orgs(reg_txn_t *t, reg_org_fn fn, void *arg)
{
	MDB_cursor *c;
	int n = 0, rc = cursor(t, DB_ORGS, &c);
	if (rc)
		return rc;
	MDB_val k, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (v.mv_size != 4)
			return -EIO;
		n++;
		if (fn(k.mv_data, k.mv_size, get_be32(v.mv_data), arg))
			return n;
	}
	return rc == MDB_NOTFOUND ? n : map_err(rc);
}

int reg_walk_machines(reg_txn_t *t, reg_machine_fn fn, void *arg)
{
	MDB_cursor *c;
	int n = 0, rc = cursor(t, DB_MACHINES, &c);
	if (rc)
		return rc;
	MDB_val k, v;
	reg_machine_buf_t b;
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		int e = dec_machine(&k, &v, &b);
		if (e)
			return e;
		n++;
		if (fn(&b.m, arg))
			return n;
	}
	return rc == MDB_NOTFOUND ? n : map_err(rc);
}

static int walk_all(reg_txn_t *t, int db, decode_fn decode, reg_walk_fn fn, void *arg)
{
	rkey_t none = {.n = 0};
	return walk_prefix(t, db, &none, decode, fn, arg);
}

int reg_walk_all_peers(reg_txn_t *t, reg_walk_fn fn, void *arg)
{
	return walk_all(t, DB_PEERS, hit_from_peer, fn, arg);
}

int reg_walk_all_flycast(reg_txn_t *t, reg_walk_fn fn, void *arg)
{
	return walk_all(t, DB_FLYCAST, hit_from_flycast, fn, arg);
}

/* ---- the follower's position ----------------------------------------------------------------- */

int reg_get_follow(reg_txn_t *t, reg_follow_t *out)
{
	MDB_val v;
	int rc = raw_get(t, DB_META, "follow", 6, &v);
	if (rc)
		return rc;
	const uint8_t *b = v.mv_data;
	if (v.mv_size < 18 || b[16] >= sizeof out->bucket || b[17] >= sizeof out->stream ||
	    (v.mv_size != 18u + b[16] + b[17] && v.mv_size != 35u + b[16] + b[17]))
		return -EINVAL;
	memset(out, 0, sizeof *out);
	out->seq = get_be64(b);
	out->applied_ns = get_be64(b + 8);
	memcpy(out->bucket, b + 18, b[16]);
	memcpy(out->stream, b + 18 + b[16], b[17]);
	const uint8_t *x = b + 18 + b[16] + b[17];
	bool more = v.mv_size == 35u + b[16] + b[17]; /* else written by an older follower */
	out->head = more ? get_be64(x) : out->seq;
	out->contact_ns = more ? get_be64(x + 8) : 0;
	out->synced = more ? x[16] != 0 : true;
	return 0;
}

/* ---- reverse names: is a nibble prefix an empty non-terminal? ------------------------------ */

static bool has_prefix(const MDB_val *key, uint32_t net, const uint8_t start[16], unsigned nibbles)
{
	if (key->mv_size != 20 || get_be32(key->mv_data) != net)
		return false;
	const uint8_t *got = (const uint8_t *)key->mv_data + 4;
	if (memcmp(got, start, nibbles / 2) != 0)
		return false;
	return nibbles % 2 == 0 || (got[nibbles / 2] & 0xf0) == start[nibbles / 2];
}

/* Seeks the first address of net at or after the prefix's first address and compares
 * nibble by nibble: one seek, then a step past each hidden record, no allocation. */
int reg_addr_prefix(reg_txn_t *t, uint32_t net, const uint8_t ip[16], unsigned nibbles,
                    bool (*hidden)(const reg_hit_t *hit))
{
	if (nibbles > 32)
		return -EINVAL;
	uint8_t start[16] = {0};
	memcpy(start, ip, nibbles / 2);
	if (nibbles % 2)
		start[nibbles / 2] = ip[nibbles / 2] & 0xf0;
	rkey_t k;
	addr_key(&k, net, start);
	MDB_val key = {k.n, k.b}, v;
	MDB_cursor *c;
	int rc = cursor(t, DB_ADDR, &c);
	if (rc)
		return rc;
	for (rc = mdb_cursor_get(c, &key, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &key, &v, MDB_NEXT)) {
		if (!has_prefix(&key, net, start, nibbles))
			return 0;
		reg_hit_t h;
		if (!hidden)
			return 1;
		if ((rc = hit_from_addr(&key, &v, &h)))
			return rc;
		if (!hidden(&h))
			return 1;
	}
	return rc == MDB_NOTFOUND ? 0 : map_err(rc);
}
