/*
 * registry.c — the LMDB schema, its write API and its allocation-free read path.
 *
 * Tables (named LMDB databases). Every key of a per-org table starts with the org's
 * 4-byte big-endian network, so one org is one contiguous key range.
 *
 *   meta      "generation" -> u64 BE; "schema" -> u32 BE; "written" -> u64 BE (ns since
 *             the epoch of the last commit); "follow" -> the follower's position
 *             (u64 BE seq | u64 BE applied ns | u8 len bucket | u8 len stream | both)
 *   orgs      slug -> net
 *   orgnets   net -> slug
 *   machines  id -> machine record (see enc_machine), every state
 *   regions   code -> f64 BE lat | f64 BE lon | city name (no org: shared by all)
 *   serials   net -> u64 BE: the generation of the last write that changed the org
 *   peers     net | name -> ip16 | region
 *   flycast   net | app \0 | ip16 -> ""
 *   idx       started Machines only, every key of an app side by side (net app \0 tag),
 *             so a start or stop rewrites one leaf of idx, not four (values: ip16 | u8
 *             app len | u8 id len | u8 region len | region: a hit decodes without
 *             scanning its key):
 *               net app \0 'A' id                 (vms., _instances, <id>.vm.)
 *               net app \0 'R' region \0 id       (nearest: by region, then id)
 *             and counters (u32 BE):
 *               net app \0 'S'                    started Machines of the app
 *               net app \0 'r' region             ... of the app in the region
 *             ('A' sorts first: an org's Machines by app then id are each app's 'A'
 *             run, the walk seeking from one app to the next)
 *   sets      DUPSORT|DUPFIXED: one key per AAAA answer, 16-byte addresses as its values
 *             (read a page at a time with MDB_GET_MULTIPLE, counted with
 *             mdb_cursor_count), started Machines only, an app's sets side by side:
 *               net app \0 'A' | net app \0 'R' region | net app \0 'G' group
 *               net app \0 'M' key \0 value
 *               net app \0 'K' key   (queryable metadata pairs only, lower-cased)
 *   addr      net | ip16 -> 'm' app \0 id \0 region  (started Machines)
 *                        -> 'p' name \0 region         (peers)
 *   all       Machines in every state (the all. names, the querier of nearest):
 *               net 'a' app \0 id -> as idx 'A'   (all.vms, all._instances)
 *               net 'q' app \0 region -> u32 BE   (all.regions: Machines of any state)
 *               net 'i' ip16 id -> region          (a stopped querier's region)
 *
 * A Machine with skip_dns is in none of idx, sets, addr, all.
 *
 * Labels never contain \0, so "app\0" bounds the app's range exactly. Each answer is a
 * seek plus a range walk over the records it returns. This file must never be the one
 * place that decides what DNS says: it stores and walks, answer.c decides.
 */
#include "registry.h"

#include "names.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* 4: regions, serials and all tables; machine records v2 (flags, metadata of any text).
 * 5: idx and sets keyed app first (net app \0 tag ...). reg_upgrade converts 3 and 4. */
#define SCHEMA_VERSION 5
#define SCHEMA_OLDEST  3
#define KEY_MAX        511
/* A read-only map is virtual address space only: the larger, the rarer a remap after
 * the writer grows the file. Smaller windows are tried where address space is limited
 * (ulimit -v, valgrind); 0 means the size the writer last set. */
static const size_t reader_mapsizes[] = {1ULL << 40, 1ULL << 36, 1ULL << 32, 0};

enum {
	DB_META,
	DB_ORGS,
	DB_ORGNETS,
	DB_MACHINES,
	DB_PEERS,
	DB_FLYCAST,
	DB_IDX,
	DB_ADDR,
	DB_SETS,
	DB_REGIONS,
	DB_SERIALS,
	DB_ALL,
	DB_N
};
static const char *const db_names[DB_N] = {"meta",  "orgs",    "orgnets", "machines",
                                           "peers", "flycast", "idx",     "addr",
                                           "sets",  "regions", "serials", "all"};
static const unsigned db_flags[DB_N] = {[DB_SETS] = MDB_DUPSORT | MDB_DUPFIXED};

struct reg {
	MDB_env *env;
	MDB_dbi dbi[DB_N];
	unsigned flags;
	size_t mapsize;
	/* Read snapshots hold it shared; adopting a grown map (MDB_MAP_RESIZED) needs no
	 * transaction alive in this process, so it takes it exclusively. */
	pthread_rwlock_t remap;
};

struct reg_txn {
	reg_t *reg;
	MDB_txn *txn;
	MDB_cursor *curs[DB_N];
	unsigned stale; /* bit db: curs[db] not yet renewed into the current snapshot */
	bool write;
	bool shared;      /* holds reg->remap shared */
	bool touched_any; /* touched: the last org whose serial this txn set */
	uint32_t touched;
};

/* ---- small helpers ---------------------------------------------------------------- */

typedef struct {
	uint8_t b[KEY_MAX];
	size_t n;
	bool overflow;
} rkey_t;

static void key_init(rkey_t *k, uint32_t net, int tag)
{
	k->b[0] = (uint8_t)(net >> 24);
	k->b[1] = (uint8_t)(net >> 16);
	k->b[2] = (uint8_t)(net >> 8);
	k->b[3] = (uint8_t)net;
	k->n = 4;
	k->overflow = false;
	if (tag)
		k->b[k->n++] = (uint8_t)tag;
}

static void key_put(rkey_t *k, const void *p, size_t len)
{
	if (k->n + len > KEY_MAX) {
		k->overflow = true;
		return;
	}
	memcpy(k->b + k->n, p, len);
	k->n += len;
}

static void key_str(rkey_t *k, const char *s, size_t len, bool sep)
{
	key_put(k, s, len);
	if (sep)
		key_put(k, "", 1);
}

/* The start of every idx and sets key of an app: net app \0 tag. */
static void app_key(rkey_t *k, uint32_t net, const char *app, size_t len, int tag)
{
	key_init(k, net, 0);
	key_str(k, app, len, true);
	key_put(k, (uint8_t[]){(uint8_t)tag}, 1);
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int map_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	default:
		return rc < 0 ? rc : -rc; /* LMDB codes are negative; errno values positive */
	}
}

const char *reg_strerror(int err)
{
	if (err == -EADDRINUSE)
		return "address already held by a started Machine or a peer";
	if (err == -EEXIST)
		return "conflicts with an existing record";
	if (err == -EPROTO)
		return "the registry was written by an older release (schema 3 or 4); convert it "
		       "in place with 'internalctl --db DIR upgrade zones/regions.jsonl' (see "
		       "internalctl(8)), or export it with the old release and 'import --replace' "
		       "the export together with zones/regions.jsonl";
	if (err == -EPROTONOSUPPORT)
		return "the registry was written by a newer release or is not a registry";
	if (err <= MDB_KEYEXIST && err >= MDB_LAST_ERRCODE)
		return mdb_strerror(err);
	return strerror(err < 0 ? -err : err);
}

/* ---- environment -------------------------------------------------------------------- */

/* A schema reg_upgrade converts. */
static bool older(uint32_t schema)
{
	return schema >= SCHEMA_OLDEST && schema < SCHEMA_VERSION;
}

/* The meta table first: its schema decides whether the others may be opened. */
static int open_dbis(reg_t *reg, bool create, bool upgrade)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(reg->env, NULL, create ? 0 : MDB_RDONLY, &txn);
	if (rc)
		return map_err(rc);
	rc = mdb_dbi_open(txn, db_names[DB_META], create ? MDB_CREATE : 0, &reg->dbi[DB_META]);
	if (rc)
		goto fail;
	uint8_t buf[8];
	MDB_val k = {6, "schema"}, v;
	rc = mdb_get(txn, reg->dbi[DB_META], &k, &v);
	if (rc == MDB_NOTFOUND && create) {
		put_u32(buf, SCHEMA_VERSION);
		v = (MDB_val){4, buf};
		if ((rc = mdb_put(txn, reg->dbi[DB_META], &k, &v, 0)))
			goto fail;
	} else if (rc) {
		goto fail;
	} else if (v.mv_size != 4 || (get_u32(v.mv_data) != SCHEMA_VERSION &&
	                              !(upgrade && older(get_u32(v.mv_data))))) {
		bool prev = v.mv_size == 4 && older(get_u32(v.mv_data));
		mdb_txn_abort(txn);
		return prev ? -EPROTO : -EPROTONOSUPPORT;
	}
	for (int i = 1; i < DB_N; i++) {
		rc = mdb_dbi_open(txn, db_names[i], db_flags[i] | (create ? MDB_CREATE : 0),
		                  &reg->dbi[i]);
		if (rc)
			goto fail;
	}
	/* commit even a read-only txn: an aborted one would close the handles it opened */
	return map_err(mdb_txn_commit(txn));
fail:
	mdb_txn_abort(txn);
	return rc == MDB_NOTFOUND ? -ENOENT : map_err(rc);
}

static int env_open(reg_t *reg, const char *dir, size_t mapsize)
{
	bool rdonly = reg->flags & REG_RDONLY;
	int rc = mdb_env_create(&reg->env);
	if (rc)
		return rc;
	if ((rc = mdb_env_set_maxdbs(reg->env, DB_N)) ||
	    (rc = mdb_env_set_maxreaders(reg->env, 512)) ||
	    (mapsize && (rc = mdb_env_set_mapsize(reg->env, mapsize))))
		goto fail;
	unsigned eflags = MDB_NOTLS | (rdonly ? MDB_RDONLY : 0) |
	                  (reg->flags & REG_NOSYNC ? MDB_NOSYNC : 0) |
	                  (!rdonly && reg->flags & REG_WRITEMAP ? MDB_WRITEMAP : 0);
	if ((rc = mdb_env_open(reg->env, dir, eflags, 0644)))
		goto fail;
	if (!rdonly) { /* internald reads as a user of the registry's group (internald(8),
		        * --user): it writes the reader table (lock.mdb), never data.mdb */
		char lock[4096];
		snprintf(lock, sizeof(lock), "%s/lock.mdb", dir);
		if (chmod(lock, 0664) != 0)
			errno = 0; /* not its owner: the mode stays as the owner made it */
	}
	MDB_envinfo info;
	MDB_stat st;
	mdb_env_info(reg->env, &info);
	mdb_env_stat(reg->env, &st);
	/* LMDB maps an existing registry as large as its data: a writer's first large
	 * transaction (a follower's batch copies most of the pages it touches) would fill
	 * it and have to be written again. Room for as much again. */
	size_t used = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
	if (!rdonly && info.me_mapsize < 2 * used && mdb_env_set_mapsize(reg->env, 2 * used) == 0)
		mdb_env_info(reg->env, &info);
	reg->mapsize = info.me_mapsize;
	return 0;
fail:
	mdb_env_close(reg->env);
	reg->env = NULL;
	return rc;
}

int reg_open(reg_t **out, const char *dir, unsigned flags, size_t mapsize)
{
	bool rdonly = flags & REG_RDONLY;
	reg_t *reg = calloc(1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	reg->flags = flags;
	if (!rdonly && mkdir(dir, 0755) && errno != EEXIST) {
		int e = -errno;
		free(reg);
		return e;
	}
	int rc;
	if (rdonly && mapsize) {
		rc = env_open(reg, dir, mapsize);
	} else if (rdonly) {
		size_t i = 0;
		do
			rc = env_open(reg, dir, reader_mapsizes[i]);
		while ((rc == EINVAL || rc == ENOMEM) &&
		       ++i < sizeof(reader_mapsizes) / sizeof(size_t));
	} else {
		rc = env_open(reg, dir, mapsize ? mapsize : REG_MAPSIZE_DEFAULT);
	}
	if (!rc)
		rc = open_dbis(reg, !rdonly, flags & REG_UPGRADE);
	if (!rc && (rc = pthread_rwlock_init(&reg->remap, NULL)))
		rc = -rc;
	if (rc) {
		if (reg->env)
			mdb_env_close(reg->env);
		free(reg);
		return map_err(rc);
	}
	*out = reg;
	return 0;
}

void reg_close(reg_t *reg)
{
	if (!reg)
		return;
	mdb_env_close(reg->env);
	pthread_rwlock_destroy(&reg->remap);
	free(reg);
}

int reg_reader_check(reg_t *reg)
{
	int dead = 0;
	int rc = mdb_reader_check(reg->env, &dead);
	return rc ? map_err(rc) : dead;
}

size_t reg_mapsize(const reg_t *reg)
{
	return reg->mapsize;
}

/* ---- transactions --------------------------------------------------------------------- */

static void close_cursors(reg_txn_t *t)
{
	for (int i = 0; i < DB_N; i++) {
		if (t->curs[i])
			mdb_cursor_close(t->curs[i]);
		t->curs[i] = NULL;
	}
}

static void snapshot_release(reg_txn_t *t)
{
	if (t->shared) {
		pthread_rwlock_unlock(&t->reg->remap);
		t->shared = false;
	}
}

/* Adopts the writer's larger map: no read snapshot of this process may be alive. */
static int adopt_mapsize(reg_t *reg)
{
	pthread_rwlock_wrlock(&reg->remap);
	int rc = mdb_env_set_mapsize(reg->env, 0);
	MDB_envinfo info;
	mdb_env_info(reg->env, &info);
	reg->mapsize = info.me_mapsize;
	pthread_rwlock_unlock(&reg->remap);
	return map_err(rc);
}

int reg_txn_begin(reg_t *reg, bool write, reg_txn_t **out)
{
	if (write && (reg->flags & REG_RDONLY))
		return -EROFS;
	reg_txn_t *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->reg = reg;
	t->write = write;
	int rc;
	for (;;) {
		if (!write) {
			pthread_rwlock_rdlock(&reg->remap);
			t->shared = true;
		}
		rc = mdb_txn_begin(reg->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
		if (rc != MDB_MAP_RESIZED || write)
			break;
		snapshot_release(t);
		if ((rc = adopt_mapsize(reg)))
			goto fail;
	}
	if (rc)
		goto fail;
	for (int i = 0; i < DB_N; i++)
		if ((rc = mdb_cursor_open(t->txn, reg->dbi[i], &t->curs[i])))
			goto fail;
	*out = t;
	return 0;
fail:
	close_cursors(t);
	if (t->txn)
		mdb_txn_abort(t->txn);
	snapshot_release(t);
	free(t);
	return map_err(rc);
}

void reg_txn_reset(reg_txn_t *t)
{
	mdb_txn_reset(t->txn);
	snapshot_release(t);
}

int reg_txn_renew(reg_txn_t *t)
{
	int rc;
	for (;;) {
		pthread_rwlock_rdlock(&t->reg->remap);
		t->shared = true;
		rc = mdb_txn_renew(t->txn);
		if (rc != MDB_MAP_RESIZED)
			break;
		snapshot_release(t);
		if ((rc = adopt_mapsize(t->reg)))
			return rc;
	}
	if (rc) {
		mdb_txn_reset(t->txn);
		snapshot_release(t);
	}
	/* A cursor is renewed on its first use: renewing one looks its table up in the
	 * main B-tree, and a batch of queries touches one or two of the DB_N tables. */
	t->stale = (1u << DB_N) - 1;
	return map_err(rc);
}

/* The snapshot's cursor on db. */
static int cursor(reg_txn_t *t, int db, MDB_cursor **out)
{
	if (t->stale & (1u << db)) {
		int rc = mdb_cursor_renew(t->txn, t->curs[db]);
		if (rc)
			return map_err(rc);
		t->stale &= ~(1u << db);
	}
	*out = t->curs[db];
	return 0;
}

uint64_t reg_txn_id(reg_txn_t *t)
{
	return mdb_txn_id(t->txn);
}

static void put_u64(uint8_t *b, uint64_t x)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(x >> (56 - 8 * i));
}

static uint64_t get_u64(const uint8_t *b)
{
	uint64_t x = 0;
	for (int i = 0; i < 8; i++)
		x = x << 8 | b[i];
	return x;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Every commit: the generation counts on, and the time of the write is kept beside it. */
static int bump_generation(reg_txn_t *t)
{
	uint8_t b[8], w[8];
	put_u64(b, reg_generation(t) + 1);
	put_u64(w, now_ns());
	MDB_val k = {10, "generation"}, v = {8, b};
	MDB_val wk = {7, "written"}, wv = {8, w};
	int rc = mdb_put(t->txn, t->reg->dbi[DB_META], &k, &v, 0);
	if (!rc)
		rc = mdb_put(t->txn, t->reg->dbi[DB_META], &wk, &wv, 0);
	return map_err(rc);
}

int reg_txn_commit(reg_txn_t *t)
{
	int rc = bump_generation(t);
	close_cursors(t);
	if (rc) {
		mdb_txn_abort(t->txn);
		free(t);
		return rc;
	}
	rc = map_err(mdb_txn_commit(t->txn));
	free(t);
	return rc;
}

void reg_txn_abort(reg_txn_t *t)
{
	if (!t)
		return;
	close_cursors(t);
	mdb_txn_abort(t->txn);
	snapshot_release(t);
	free(t);
}

int reg_write(reg_t *reg, reg_write_fn fn, void *arg)
{
	for (;;) {
		reg_txn_t *t;
		int rc = reg_txn_begin(reg, true, &t);
		if (rc == map_err(MDB_MAP_RESIZED)) {
			/* another writer grew the map: adopt its size */
			if ((rc = mdb_env_set_mapsize(reg->env, 0)))
				return map_err(rc);
			continue;
		}
		if (rc)
			return rc;
		rc = fn(t, arg);
		if (!rc)
			rc = reg_txn_commit(t);
		else
			reg_txn_abort(t);
		if (rc != MDB_MAP_FULL)
			return rc;
		reg->mapsize *= 2;
		if ((rc = mdb_env_set_mapsize(reg->env, reg->mapsize)))
			return map_err(rc);
	}
}

/* ---- raw access ------------------------------------------------------------------------- */

static int raw_get(reg_txn_t *t, int db, const void *k, size_t kl, MDB_val *v)
{
	MDB_val key = {kl, (void *)k};
	return map_err(mdb_get(t->txn, t->reg->dbi[db], &key, v));
}

static int raw_put(reg_txn_t *t, int db, const void *k, size_t kl, const void *v, size_t vl)
{
	MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
	return map_err(mdb_put(t->txn, t->reg->dbi[db], &key, &val, 0));
}

static int raw_del(reg_txn_t *t, int db, const void *k, size_t kl)
{
	MDB_val key = {kl, (void *)k};
	return map_err(mdb_del(t->txn, t->reg->dbi[db], &key, NULL));
}

static int kput(reg_txn_t *t, int db, const rkey_t *k, const void *v, size_t vl)
{
	return k->overflow ? -ENAMETOOLONG : raw_put(t, db, k->b, k->n, v, vl);
}

static int kdel(reg_txn_t *t, int db, const rkey_t *k)
{
	return k->overflow ? -ENAMETOOLONG : raw_del(t, db, k->b, k->n);
}

/* Adds delta to a counter of db; deletes it at zero. */
static int counter_add(reg_txn_t *t, int db, const rkey_t *k, int delta)
{
	MDB_val v;
	int rc = raw_get(t, db, k->b, k->n, &v);
	uint32_t n = 0;
	if (rc == 0 && v.mv_size == 4)
		n = get_u32(v.mv_data);
	else if (rc && rc != -ENOENT)
		return rc;
	if (delta < 0 && n == 0)
		return -EIO; /* an index that disagrees with its records: reg_check says where */
	n = (uint32_t)((int64_t)n + delta);
	if (n == 0)
		return kdel(t, db, k);
	uint8_t b[4];
	put_u32(b, n);
	return kput(t, db, k, b, 4);
}

/* The org's serial becomes the generation this transaction will commit. */
static int touch_org(reg_txn_t *t, uint32_t net)
{
	if (t->touched_any && t->touched == net)
		return 0;
	uint8_t nb[4], gb[8];
	put_u32(nb, net);
	put_u64(gb, reg_generation(t) + 1);
	int rc = raw_put(t, DB_SERIALS, nb, 4, gb, 8);
	if (!rc)
		t->touched_any = true, t->touched = net;
	return rc;
}

/* ---- machine records -------------------------------------------------------------------- */

static bool put_str(uint8_t *buf, size_t cap, size_t *n, const char *s, size_t max)
{
	size_t len = strlen(s);
	if (len > max || *n + 1 + len > cap)
		return false;
	buf[(*n)++] = (uint8_t)len;
	memcpy(buf + *n, s, len);
	*n += len;
	return true;
}

static bool get_str(const uint8_t *buf, size_t size, size_t *n, char *out, size_t cap)
{
	if (*n >= size)
		return false;
	size_t len = buf[(*n)++];
	if (len >= cap || *n + len > size)
		return false;
	memcpy(out, buf + *n, len);
	out[len] = '\0';
	*n += len;
	return true;
}

#define MACHINE_ENC_MAX                                                                            \
	(32 + 4 * (REG_LABEL_MAX + 1) + REG_META_MAX * (REG_LABEL_MAX + REG_META_VALUE_MAX + 2))
#define REC_V2        2
#define FLAG_SKIP_DNS 0x01

/* v2 | net4 | ip16 | u8 flags | str app | str region | str group | str state | u8 nmeta |
 * (str k, str v)*. Version 1 (schema 3) had no flags byte; dec_machine reads both. */
static int enc_machine(const reg_machine_t *m, uint8_t *buf, size_t cap, size_t *len)
{
	if (m->nmeta > REG_META_MAX)
		return -E2BIG;
	size_t n = 0;
	buf[n++] = REC_V2;
	put_u32(buf + n, m->net);
	n += 4;
	memcpy(buf + n, m->ip, 16);
	n += 16;
	buf[n++] = m->skip_dns ? FLAG_SKIP_DNS : 0;
	if (!put_str(buf, cap, &n, m->app, REG_LABEL_MAX) ||
	    !put_str(buf, cap, &n, m->region, REG_LABEL_MAX) ||
	    !put_str(buf, cap, &n, m->group, REG_LABEL_MAX) ||
	    !put_str(buf, cap, &n, m->state, REG_STATE_MAX))
		return -ENAMETOOLONG;
	buf[n++] = (uint8_t)m->nmeta;
	for (size_t i = 0; i < m->nmeta; i++)
		if (!put_str(buf, cap, &n, m->meta[i].key, REG_LABEL_MAX) ||
		    !put_str(buf, cap, &n, m->meta[i].value, REG_META_VALUE_MAX))
			return -ENAMETOOLONG;
	*len = n;
	return 0;
}

static int dec_machine(const MDB_val *key, const MDB_val *val, reg_machine_buf_t *o)
{
	const uint8_t *b = val->mv_data;
	size_t size = val->mv_size, n = 21;
	if (key->mv_size > REG_LABEL_MAX || size < 22 || (b[0] != 1 && b[0] != REC_V2))
		return -EIO;
	memcpy(o->id, key->mv_data, key->mv_size);
	o->id[key->mv_size] = '\0';
	o->m.id = o->id;
	o->m.net = get_u32(b + 1);
	memcpy(o->m.ip, b + 5, 16);
	o->m.skip_dns = false;
	if (b[0] == REC_V2)
		o->m.skip_dns = b[n++] & FLAG_SKIP_DNS;
	if (!get_str(b, size, &n, o->app, sizeof(o->app)) ||
	    !get_str(b, size, &n, o->region, sizeof(o->region)) ||
	    !get_str(b, size, &n, o->group, sizeof(o->group)) ||
	    !get_str(b, size, &n, o->state, sizeof(o->state)) || n >= size)
		return -EIO;
	o->m.app = o->app;
	o->m.region = o->region;
	o->m.group = o->group;
	o->m.state = o->state;
	o->m.nmeta = b[n++];
	if (o->m.nmeta > REG_META_MAX)
		return -EIO;
	for (size_t i = 0; i < o->m.nmeta; i++) {
		if (!get_str(b, size, &n, o->metabuf[i][0], REG_LABEL_MAX + 1) ||
		    !get_str(b, size, &n, o->metabuf[i][1], REG_META_VALUE_MAX + 1))
			return -EIO;
		o->meta[i].key = o->metabuf[i][0];
		o->meta[i].value = o->metabuf[i][1];
	}
	o->m.meta = o->meta;
	return 0;
}

static bool is_started(const reg_machine_t *m)
{
	return strcmp(m->state, "started") == 0;
}

/* The value every idx entry of a Machine carries:
 * ip16 | u8 app len | u8 id len | u8 region len | region. */
#define IDX_VAL_HDR 19
static size_t idx_value(const reg_machine_t *m, uint8_t *v)
{
	size_t rl = strlen(m->region);
	memcpy(v, m->ip, 16);
	v[16] = (uint8_t)strlen(m->app);
	v[17] = (uint8_t)strlen(m->id);
	v[18] = (uint8_t)rl;
	memcpy(v + IDX_VAL_HDR, m->region, rl);
	return IDX_VAL_HDR + rl;
}

static void addr_key(rkey_t *k, uint32_t net, const uint8_t ip[16])
{
	key_init(k, net, 0);
	key_put(k, ip, 16);
}

/* The address entry of a Machine: 'm' app \0 id \0 region. */
static size_t addr_value_machine(const reg_machine_t *m, uint8_t *v)
{
	size_t n = 0, al = strlen(m->app), il = strlen(m->id), rl = strlen(m->region);
	v[n++] = 'm';
	memcpy(v + n, m->app, al), n += al, v[n++] = 0;
	memcpy(v + n, m->id, il), n += il, v[n++] = 0;
	memcpy(v + n, m->region, rl), n += rl;
	return n;
}

/* Index keys of a Machine: 'A', 'R' entries, 'S' and 'r' counters (idx, started, app
 * first); 'a' entries and 'q' counters (all, every state: net tag app \0 ...). */
static void idx_key(rkey_t *k, const reg_machine_t *m, int tag)
{
	if (tag == 'a' || tag == 'q') {
		key_init(k, m->net, tag);
		key_str(k, m->app, strlen(m->app), true);
	} else {
		app_key(k, m->net, m->app, strlen(m->app), tag);
	}
	switch (tag) {
	case 'R':
		key_str(k, m->region, strlen(m->region), true);
		break;
	case 'r':
	case 'q':
		key_str(k, m->region, strlen(m->region), false);
		return;
	case 'S':
		return;
	}
	key_str(k, m->id, strlen(m->id), false);
}

/* The all table's address key of a Machine: net 'i' ip16 id. */
static void any_addr_key(rkey_t *k, const reg_machine_t *m)
{
	key_init(k, m->net, 'i');
	key_put(k, m->ip, 16);
	key_str(k, m->id, strlen(m->id), false);
}

static bool meta_queryable(const reg_meta_t *p)
{
	return names_meta_label(p->key, strlen(p->key)) &&
	       names_meta_label(p->value, strlen(p->value));
}

static void key_lower(rkey_t *k, const char *s, bool sep)
{
	size_t len = strlen(s), start = k->n;
	key_str(k, s, len, sep);
	if (k->overflow)
		return;
	for (size_t i = start; i < start + len; i++)
		if (k->b[i] >= 'A' && k->b[i] <= 'Z')
			k->b[i] = (uint8_t)(k->b[i] - 'A' + 'a');
}

/* Set i of a Machine's AAAA sets: 0..2 'A', 'R', 'G'; then per metadata pair its 'M' set
 * and its 'K' set. false: pair i is not queryable, no set. */
#define MACHINE_SETS(m) (3 + 2 * (m)->nmeta)
static bool set_key(rkey_t *k, const reg_machine_t *m, size_t i)
{
	static const int tags[] = {'A', 'R', 'G'};
	int tag = i < 3 ? tags[i] : (i - 3) % 2 ? 'K' : 'M';
	const reg_meta_t *p = i < 3 ? NULL : &m->meta[(i - 3) / 2];
	if (p && !meta_queryable(p))
		return false;
	app_key(k, m->net, m->app, strlen(m->app), tag);
	if (tag == 'R')
		key_str(k, m->region, strlen(m->region), false);
	else if (tag == 'G')
		key_str(k, m->group, strlen(m->group), false);
	else if (tag == 'M') {
		key_lower(k, p->key, true);
		key_lower(k, p->value, false);
	} else if (tag == 'K') {
		key_lower(k, p->key, false);
	}
	return true;
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

static const int set_tags[] = {'A', 'R', 'G'};

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
	if (!same_any(a, b) || strcmp(a->group, b->group) != 0 || a->nmeta != b->nmeta)
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
static int reindex(reg_txn_t *t, const reg_machine_t *old, const reg_machine_t *m)
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
	put_u32(nb, net);
	MDB_val v;
	int rc = raw_get(t, DB_ORGS, slug, len, &v);
	if (rc == 0)
		return v.mv_size == 4 && get_u32(v.mv_data) == net ? 0 : -EEXIST;
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

int reg_get_machine(reg_txn_t *t, const char *id, reg_machine_buf_t *out)
{
	MDB_val k = {strlen(id), (void *)id}, v;
	if (k.mv_size == 0 || k.mv_size > REG_LABEL_MAX)
		return -ENOENT;
	int rc = map_err(mdb_get(t->txn, t->reg->dbi[DB_MACHINES], &k, &v));
	return rc ? rc : dec_machine(&k, &v, out);
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

static void peer_key(rkey_t *k, uint32_t net, const char *name, size_t len)
{
	key_init(k, net, 0);
	key_str(k, name, len, false);
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

static void flycast_key(rkey_t *k, uint32_t net, const char *app, size_t len, const uint8_t *ip)
{
	key_init(k, net, 0);
	key_str(k, app, len, true);
	if (ip)
		key_put(k, ip, 16);
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

static double bitsd(uint64_t u)
{
	double d;
	memcpy(&d, &u, 8);
	return d;
}

int reg_put_region(reg_txn_t *t, const char *code, const char *name, double lat, double lon)
{
	size_t nl = strlen(name);
	if (!label_ok(code) || nl > REG_REGION_NAME_MAX)
		return -ENAMETOOLONG;
	if (!(lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180))
		return -EINVAL;
	uint8_t v[16 + REG_REGION_NAME_MAX];
	put_u64(v, dbits(lat));
	put_u64(v + 8, dbits(lon));
	memcpy(v + 16, name, nl);
	return raw_put(t, DB_REGIONS, code, strlen(code), v, 16 + nl);
}

int reg_delete_region(reg_txn_t *t, const char *code)
{
	if (!label_ok(code))
		return -ENOENT;
	return raw_del(t, DB_REGIONS, code, strlen(code));
}

static int region_from(const MDB_val *k, const MDB_val *v, reg_region_t *r)
{
	if (v->mv_size < 16 || k->mv_size > REG_LABEL_MAX)
		return -EIO;
	const uint8_t *b = v->mv_data;
	*r = (reg_region_t){
	        .code = k->mv_data,
	        .code_len = (uint8_t)k->mv_size,
	        .name = (const char *)b + 16,
	        .name_len = (uint8_t)(v->mv_size - 16),
	        .lat = bitsd(get_u64(b)),
	        .lon = bitsd(get_u64(b + 8)),
	};
	return 0;
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

/* ---- upgrade from schema 3 ------------------------------------------------------------------ */

typedef struct {
	char *ids; /* NUL-separated */
	size_t len, cap, n;
} idlist_t;

static int idlist_add(idlist_t *l, const void *id, size_t len)
{
	if (l->len + len + 1 > l->cap) {
		size_t cap = 2 * (l->len + len + 1) + 4096;
		char *p = realloc(l->ids, cap);
		if (!p)
			return -ENOMEM;
		l->ids = p, l->cap = cap;
	}
	memcpy(l->ids + l->len, id, len);
	l->ids[l->len + len] = '\0';
	l->len += len + 1;
	l->n++;
	return 0;
}

static int schema_of(reg_txn_t *t)
{
	MDB_val v;
	int rc = raw_get(t, DB_META, "schema", 6, &v);
	if (rc)
		return rc;
	return v.mv_size == 4 ? (int)get_u32(v.mv_data) : -EIO;
}

/* A peer's address entry, rebuilt from its record (net | name -> ip16 | region). */
static int peer_addr(reg_txn_t *t, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size < 5 || v->mv_size < 17 || k->mv_size > 4 + REG_LABEL_MAX)
		return -EIO;
	uint32_t net = get_u32(k->mv_data);
	size_t nl = k->mv_size - 4, rl = v->mv_size - 16, n = 0;
	uint8_t av[2 * REG_LABEL_MAX + 4];
	if (rl > REG_LABEL_MAX)
		return -EIO;
	av[n++] = 'p';
	memcpy(av + n, (const uint8_t *)k->mv_data + 4, nl), n += nl, av[n++] = 0;
	memcpy(av + n, (const uint8_t *)v->mv_data + 16, rl), n += rl;
	rkey_t ak;
	addr_key(&ak, net, v->mv_data);
	int rc = kput(t, DB_ADDR, &ak, av, n);
	return rc ? rc : touch_org(t, net);
}

int reg_upgrade(reg_txn_t *t)
{
	if (!t->write)
		return -EROFS;
	int rc = schema_of(t);
	if (rc < 0 || rc == SCHEMA_VERSION)
		return rc < 0 ? rc : 0;
	if (!older((uint32_t)rc))
		return -EPROTONOSUPPORT;
	static const int rebuilt[] = {DB_IDX, DB_ADDR, DB_SETS, DB_ALL, DB_SERIALS};
	for (size_t i = 0; i < sizeof(rebuilt) / sizeof(rebuilt[0]); i++)
		if ((rc = mdb_drop(t->txn, t->reg->dbi[rebuilt[i]], 0)))
			return map_err(rc);
	t->touched_any = false;
	/* Machine ids are read first: rewriting the records while walking them would move
	 * the cursor under us. Peers keep their records; only their address entries are
	 * rebuilt (another table). */
	idlist_t ids = {0};
	MDB_cursor *c;
	MDB_val k, v;
	reg_machine_buf_t *b = NULL;
	if ((rc = cursor(t, DB_MACHINES, &c)))
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		if ((rc = idlist_add(&ids, k.mv_data, k.mv_size)))
			goto done;
	if (rc != MDB_NOTFOUND)
		goto done;
	if (!(b = malloc(sizeof(*b)))) {
		rc = -ENOMEM;
		goto done;
	}
	rc = 0;
	const char *id = ids.ids;
	for (size_t i = 0; i < ids.n && !rc; i++, id += strlen(id) + 1) {
		uint8_t buf[MACHINE_ENC_MAX];
		size_t len;
		if (!(rc = reg_get_machine(t, id, b)) &&
		    !(rc = enc_machine(&b->m, buf, sizeof(buf), &len)) &&
		    !(rc = raw_put(t, DB_MACHINES, id, strlen(id), buf, len)) &&
		    !(rc = touch_org(t, b->m.net)))
			rc = reindex(t, NULL, &b->m);
	}
	if (rc || (rc = cursor(t, DB_PEERS, &c)))
		goto done;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		if ((rc = peer_addr(t, &k, &v)))
			goto done;
	if (rc != MDB_NOTFOUND)
		goto done;
	/* orgs without records get a serial too */
	if ((rc = cursor(t, DB_ORGNETS, &c)))
		goto done;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		if ((rc = k.mv_size != 4 ? -EIO : touch_org(t, get_u32(k.mv_data))))
			goto done;
	if (rc != MDB_NOTFOUND)
		goto done;
	uint8_t sb[4];
	put_u32(sb, SCHEMA_VERSION);
	if ((rc = raw_put(t, DB_META, "schema", 6, sb, 4)))
		goto done;
	rc = 1;
done:
	free(ids.ids);
	free(b);
	return rc < 0 ? map_err(rc) : rc;
}

/* ---- point reads ---------------------------------------------------------------------------- */

uint64_t reg_generation(reg_txn_t *t)
{
	MDB_val v;
	if (raw_get(t, DB_META, "generation", 10, &v) || v.mv_size != 8)
		return 0;
	return get_u64(v.mv_data);
}

uint32_t reg_org_serial(reg_txn_t *t, uint32_t net)
{
	uint8_t nb[4];
	MDB_val v;
	put_u32(nb, net);
	if (raw_get(t, DB_SERIALS, nb, 4, &v) || v.mv_size != 8)
		return 0;
	return (uint32_t)get_u64(v.mv_data);
}

uint64_t reg_written_ns(reg_txn_t *t)
{
	MDB_val v;
	if (raw_get(t, DB_META, "written", 7, &v) || v.mv_size != 8)
		return 0;
	return get_u64(v.mv_data);
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
	*net = get_u32(v.mv_data);
	return 0;
}

int reg_org_slug(reg_txn_t *t, uint32_t net, char *buf, size_t cap)
{
	uint8_t nb[4];
	MDB_val v;
	put_u32(nb, net);
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

/* Fills hit from an idx entry (net tag app \0 ... \0 id -> see idx_value): the
 * lengths in the value place app and id in the key without scanning it. */
/* An idx 'A'/'R' entry (net app \0 tag ...: the app at 4) or an all 'a' entry (net tag
 * app \0 id: at 5); both keys hold at least 6 bytes beside the app and the id. */
static int hit_at(const MDB_val *k, const MDB_val *v, reg_hit_t *h, size_t app_at)
{
	const uint8_t *kb = k->mv_data, *vb = v->mv_data;
	if (v->mv_size < IDX_VAL_HDR || v->mv_size != (size_t)IDX_VAL_HDR + vb[18] ||
	    k->mv_size < 6u + vb[16] + vb[17])
		return -EIO;
	h->kind = REG_HIT_MACHINE;
	h->net = get_u32(kb);
	h->ip = vb;
	h->app = (const char *)kb + app_at;
	h->app_len = vb[16];
	h->id = (const char *)kb + k->mv_size - vb[17];
	h->id_len = vb[17];
	h->region = (const char *)vb + IDX_VAL_HDR;
	h->region_len = vb[18];
	return 0;
}

static int hit_from_idx(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	return hit_at(k, v, h, 4);
}

static int hit_from_all(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	return hit_at(k, v, h, 5);
}

typedef int (*decode_fn)(const MDB_val *k, const MDB_val *v, reg_hit_t *h);

/* Walks every key of db starting with prefix; decode turns entries into hits. */
static int walk_prefix(reg_txn_t *t, int db, const rkey_t *prefix, decode_fn decode, reg_walk_fn fn,
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
static int idx_app(const MDB_val *k, uint32_t net)
{
	const uint8_t *kb = k->mv_data;
	if (k->mv_size < 7 || get_u32(kb) != net)
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

/* peers: net | name -> ip16 | region */
static int hit_from_peer(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	if (k->mv_size < 5 || v->mv_size < 16)
		return -EIO;
	*h = (reg_hit_t){
	        .kind = REG_HIT_PEER,
	        .net = get_u32(k->mv_data),
	        .ip = v->mv_data,
	        .id = (const char *)k->mv_data + 4,
	        .id_len = (uint8_t)(k->mv_size - 4),
	        .region = (const char *)v->mv_data + 16,
	        .region_len = (uint8_t)(v->mv_size - 16),
	};
	return 0;
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

/* flycast: net | app \0 | ip16 */
static int hit_from_flycast(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	(void)v;
	const uint8_t *kb = k->mv_data;
	if (k->mv_size < 4 + 2 + 16)
		return -EIO;
	*h = (reg_hit_t){
	        .kind = REG_HIT_MACHINE,
	        .net = get_u32(kb),
	        .ip = kb + k->mv_size - 16,
	        .app = (const char *)kb + 4,
	        .app_len = (uint8_t)(k->mv_size - 4 - 17),
	        .id = "",
	        .region = "",
	};
	return 0;
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
		             get_u32(v.mv_data), arg))
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
	count = get_u32(cv.mv_data);
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
	*count = get_u32(v.mv_data);
	return 0;
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

/* addr: net | ip16 -> 'm' app \0 id \0 region | 'p' name \0 region */
static int hit_from_addr(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	const uint8_t *vb = v->mv_data, *end = vb + v->mv_size;
	if (k->mv_size != 20 || v->mv_size < 2)
		return -EIO;
	*h = (reg_hit_t){.net = get_u32(k->mv_data), .ip = (const uint8_t *)k->mv_data + 4};
	const uint8_t *p = vb + 1, *s;
	if (vb[0] == 'm') {
		h->kind = REG_HIT_MACHINE;
		if (!(s = memchr(p, 0, (size_t)(end - p))))
			return -EIO;
		h->app = (const char *)p, h->app_len = (uint8_t)(s - p), p = s + 1;
	} else if (vb[0] == 'p') {
		h->kind = REG_HIT_PEER;
	} else {
		return -EIO;
	}
	if (!(s = memchr(p, 0, (size_t)(end - p))))
		return -EIO;
	h->id = (const char *)p, h->id_len = (uint8_t)(s - p), p = s + 1;
	h->region = (const char *)p, h->region_len = (uint8_t)(end - p);
	return 0;
}

static uint32_t net_of(const uint8_t ip[16])
{
	return get_u32(ip + 2);
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
		        .net = get_u32(kb),
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
		if (fn(k.mv_data, k.mv_size, get_u32(v.mv_data), arg))
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

/* ---- check
 * ----------------------------------------------------------------------------------------- */

typedef struct {
	reg_txn_t *t;
	void (*report)(const char *, void *);
	void *arg;
	int bad;
	size_t expect_idx, expect_addr, expect_sets, expect_all;
} check_t;

static void bad(check_t *c, const char *fmt, const char *a, const char *b)
{
	char msg[512];
	snprintf(msg, sizeof(msg), fmt, a, b);
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
		bad(c, "machine %s: all-states entry missing or wrong%s", m->id, "");
	any_addr_key(&k, m);
	c->expect_all++;
	if (raw_get(c->t, DB_ALL, k.b, k.n, &v) || v.mv_size != strlen(m->region) ||
	    memcmp(v.mv_data, m->region, v.mv_size))
		bad(c, "machine %s: all-states address entry missing or wrong%s", m->id, "");
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
			    i < 3 ? what[i] : "metadata");
	}
	addr_key(&k, m->net, m->ip);
	uint8_t av[3 * (REG_LABEL_MAX + 1)];
	size_t al = addr_value_machine(m, av);
	c->expect_addr++;
	if (raw_get(c->t, DB_ADDR, k.b, k.n, &v) || v.mv_size != al || memcmp(v.mv_data, av, al))
		bad(c, "machine %s: address entry missing or wrong%s", m->id, "");
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
		bad(c, "peer %s: address entry missing or wrong%s", name, "");
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
		int sal = k.mv_size >= 4 ? idx_app(&k, get_u32(kb)) : -1;
		if (sal < 0) {
			bad(c, "index: malformed key%s%s", "", "");
			continue;
		}
		size_t al = (size_t)sal;
		int tag = kb[5 + al];
		if (tag != 'S' && tag != 'r') {
			entries++;
			continue;
		}
		uint32_t net = get_u32(kb), want = v.mv_size == 4 ? get_u32(v.mv_data) : 0;
		const char *app = (const char *)kb + 4, *region = app + al + 2;
		size_t rl = k.mv_size - 6 - al;
		int got = tag == 'S'
		                  ? reg_walk_app(c->t, net, app, al, NULL, NULL)
		                  : reg_walk_app_region(c->t, net, app, al, region, rl, NULL, NULL);
		char name[2 * REG_LABEL_MAX + 2];
		snprintf(name, sizeof(name), "%.*s%s%.*s", (int)al, app, tag == 'r' ? " " : "",
		         tag == 'r' ? (int)rl : 0, region);
		if (got < 0 || (uint32_t)got != want)
			bad(c, "counter for %s does not match its Machines%s", name, "");
		/* the walk moved the shared idx cursor; ours is separate, so go on */
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return map_err(rc);
	if (entries != c->expect_idx)
		bad(c, "index holds entries no started Machine accounts for%s%s", "", "");
	MDB_stat st;
	if ((rc = mdb_stat(c->t->txn, c->t->reg->dbi[DB_ADDR], &st)))
		return map_err(rc);
	if (st.ms_entries != c->expect_addr)
		bad(c, "address index holds entries no Machine or peer accounts for%s%s", "", "");
	if ((rc = mdb_stat(c->t->txn, c->t->reg->dbi[DB_SETS], &st)))
		return map_err(rc);
	if (st.ms_entries != c->expect_sets)
		bad(c, "address sets hold addresses no started Machine accounts for%s%s", "", "");
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
		    reg_walk_all_app(c->t, get_u32(kb), app, al, count_region, &want) < 0 ||
		    want.n != get_u32(v.mv_data)) {
			char name[2 * REG_LABEL_MAX + 2];
			snprintf(name, sizeof(name), "%.*s", (int)(k.mv_size - 5), app);
			bad(c, "all-states counter for %s does not match its Machines%s", name, "");
		}
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return map_err(rc);
	if (entries != c->expect_all)
		bad(c, "all-states index holds entries no Machine accounts for%s%s", "", "");
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

/* ---- the follower's position ----------------------------------------------------------------- */

int reg_put_follow(reg_txn_t *t, const reg_follow_t *f)
{
	if (!t->write)
		return -EROFS;
	size_t bl = strnlen(f->bucket, sizeof f->bucket), sl = strnlen(f->stream, sizeof f->stream);
	if (bl == sizeof f->bucket || sl == sizeof f->stream)
		return -ENAMETOOLONG;
	uint8_t b[18 + sizeof f->bucket + sizeof f->stream];
	put_u64(b, f->seq);
	put_u64(b + 8, f->applied_ns);
	b[16] = (uint8_t)bl;
	b[17] = (uint8_t)sl;
	memcpy(b + 18, f->bucket, bl);
	memcpy(b + 18 + bl, f->stream, sl);
	MDB_val k = {6, "follow"}, v = {18 + bl + sl, b};
	return map_err(mdb_put(t->txn, t->reg->dbi[DB_META], &k, &v, 0));
}

int reg_get_follow(reg_txn_t *t, reg_follow_t *out)
{
	MDB_val v;
	int rc = raw_get(t, DB_META, "follow", 6, &v);
	if (rc)
		return rc;
	const uint8_t *b = v.mv_data;
	if (v.mv_size < 18 || b[16] >= sizeof out->bucket || b[17] >= sizeof out->stream ||
	    v.mv_size != 18u + b[16] + b[17])
		return -EINVAL;
	memset(out, 0, sizeof *out);
	out->seq = get_u64(b);
	out->applied_ns = get_u64(b + 8);
	memcpy(out->bucket, b + 18, b[16]);
	memcpy(out->stream, b + 18 + b[16], b[17]);
	return 0;
}

/* ---- reverse names: is a nibble prefix an empty non-terminal? ------------------------------ */

static bool has_prefix(const MDB_val *key, uint32_t net, const uint8_t start[16], unsigned nibbles)
{
	if (key->mv_size != 20 || get_u32(key->mv_data) != net)
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
	put_u32(nb, f.net);
	if ((rc = raw_del(t, DB_ORGS, slug, strlen(slug))))
		return rc;
	/* its serial goes too: a network with no org answers serial 0, as one never written */
	if ((rc = raw_del(t, DB_SERIALS, nb, 4)) && rc != -ENOENT)
		return rc;
	if (t->touched_any && t->touched == f.net)
		t->touched_any = false; /* an org made again in this transaction gets a serial */
	return raw_del(t, DB_ORGNETS, nb, 4);
}
