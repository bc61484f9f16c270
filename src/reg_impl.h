/*
 * reg_impl.h — what the registry's files share and nothing else includes: the key
 * layout, the table handles, the transaction, and the small helpers every piece uses.
 * The contract for callers is include/registry.h; this header is not part of it.
 *
 *   reg_core.c     environment, transactions, reg_write, the generation, errors
 *   reg_codec.c    how records and index entries are laid out (encode, decode, keys)
 *   reg_read.c     point reads and walks: everything internald needs
 *   reg_write.c    puts, deletes, indexing, org deletion, the follower's position
 *   reg_check.c    reg_check, reg_stats
 *   reg_upgrade.c  reg_upgrade from older schemas
 *
 * internald links core, codec and read only.
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
 *               net app \0 'C'       (those with a critical check: healthy. counts it)
 *   addr      net | ip16 -> 'm' app \0 id \0 region  (started Machines; 'M': one with a
 *                                                    critical check, for healthy.)
 *                        -> 'p' name \0 region         (peers)
 *   all       Machines in every state (the all. names, the querier of nearest):
 *               net 'a' app \0 id -> as idx 'A'   (all.vms, all._instances)
 *               net 'q' app \0 region -> u32 BE   (all.regions: Machines of any state)
 *               net 'i' ip16 id -> region          (a stopped querier's region)
 *
 * A Machine with skip_dns is in none of idx, sets, addr, all.
 *
 * Labels never contain \0, so "app\0" bounds the app's range exactly. Each answer is a
 * seek plus a range walk over the records it returns. The registry must never be
 * the one place that decides what DNS says: it stores and walks, answer.c decides.
 */
#ifndef REG_IMPL_H
#define REG_IMPL_H

#include "bytes.h"
#include "registry.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* 4: regions, serials and all tables; machine records v2 (flags, metadata of any text).
 * 5: idx and sets keyed app first (net app \0 tag ...). reg_upgrade converts 3 and 4. */
#define SCHEMA_VERSION 5
#define SCHEMA_OLDEST  3
#define KEY_MAX        511

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

typedef struct {
	uint8_t b[KEY_MAX];
	size_t n;
	bool overflow;
} rkey_t;

/* ---- small helpers ---------------------------------------------------------------- */

static inline void key_init(rkey_t *k, uint32_t net, int tag)
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

static inline void key_put(rkey_t *k, const void *p, size_t len)
{
	if (k->n + len > KEY_MAX) {
		k->overflow = true;
		return;
	}
	memcpy(k->b + k->n, p, len);
	k->n += len;
}

static inline void key_str(rkey_t *k, const char *s, size_t len, bool sep)
{
	key_put(k, s, len);
	if (sep)
		key_put(k, "", 1);
}

/* The start of every idx and sets key of an app: net app \0 tag. */
static inline void app_key(rkey_t *k, uint32_t net, const char *app, size_t len, int tag)
{
	key_init(k, net, 0);
	key_str(k, app, len, true);
	key_put(k, (uint8_t[]){(uint8_t)tag}, 1);
}

static inline void addr_key(rkey_t *k, uint32_t net, const uint8_t ip[16])
{
	key_init(k, net, 0);
	key_put(k, ip, 16);
}

static inline void peer_key(rkey_t *k, uint32_t net, const char *name, size_t len)
{
	key_init(k, net, 0);
	key_str(k, name, len, false);
}

static inline void flycast_key(rkey_t *k, uint32_t net, const char *app, size_t len,
                               const uint8_t *ip)
{
	key_init(k, net, 0);
	key_str(k, app, len, true);
	if (ip)
		key_put(k, ip, 16);
}

static inline int map_err(int rc)
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

/* A schema reg_upgrade converts. */
static inline bool older(uint32_t schema)
{
	return schema >= SCHEMA_OLDEST && schema < SCHEMA_VERSION;
}

/* The snapshot's cursor on db. */
static inline int cursor(reg_txn_t *t, int db, MDB_cursor **out)
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

static inline int raw_get(reg_txn_t *t, int db, const void *k, size_t kl, MDB_val *v)
{
	MDB_val key = {kl, (void *)k};
	return map_err(mdb_get(t->txn, t->reg->dbi[db], &key, v));
}

static inline int raw_put(reg_txn_t *t, int db, const void *k, size_t kl, const void *v, size_t vl)
{
	MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
	return map_err(mdb_put(t->txn, t->reg->dbi[db], &key, &val, 0));
}

static inline int raw_del(reg_txn_t *t, int db, const void *k, size_t kl)
{
	MDB_val key = {kl, (void *)k};
	return map_err(mdb_del(t->txn, t->reg->dbi[db], &key, NULL));
}

static inline int kput(reg_txn_t *t, int db, const rkey_t *k, const void *v, size_t vl)
{
	return k->overflow ? -ENAMETOOLONG : raw_put(t, db, k->b, k->n, v, vl);
}

static inline int kdel(reg_txn_t *t, int db, const rkey_t *k)
{
	return k->overflow ? -ENAMETOOLONG : raw_del(t, db, k->b, k->n);
}

static inline bool is_started(const reg_machine_t *m)
{
	return strcmp(m->state, "started") == 0;
}

/* One critical check leaves the Machine out of the healthy. names. */
static inline bool is_critical(const reg_machine_t *m)
{
	for (size_t i = 0; i < m->nchecks; i++)
		if (m->checks[i].status == REG_CHECK_CRITICAL)
			return true;
	return false;
}

/* A Machine's record (enc_machine): its largest encoding, its version, its flags. */
#define MACHINE_ENC_MAX                                                                            \
	(32 + 4 * (REG_LABEL_MAX + 1) + REG_META_MAX * (REG_LABEL_MAX + REG_META_VALUE_MAX + 2) +  \
	 1 + REG_CHECKS_MAX * (REG_LABEL_MAX + 2))
#define REC_V2        2
#define FLAG_SKIP_DNS 0x01
#define FLAG_CHECKS   0x02 /* health checks follow the metadata (older readers stop before) */

/* The sets of a Machine, counted as set_key numbers them ('C' included). */
#define MACHINE_SETS(m) (4 + 2 * (m)->nmeta)

/* Turns a table entry into a hit (reg_codec.c hit_from_*); walk_prefix calls one. */
typedef int (*decode_fn)(const MDB_val *k, const MDB_val *v, reg_hit_t *h);

/* ---- reg_codec.c: records and index entries ------------------------------------------- */

/* A Machine's record; its entries' values and keys in idx, addr, all and sets; a region's
 * record; hits decoded from idx, all, peers, flycast and addr entries. */

int enc_machine(const reg_machine_t *m, uint8_t *buf, size_t cap, size_t *len);
int dec_machine(const MDB_val *key, const MDB_val *val, reg_machine_buf_t *o);
size_t idx_value(const reg_machine_t *m, uint8_t *v);
size_t addr_value_machine(const reg_machine_t *m, uint8_t *v);
void idx_key(rkey_t *k, const reg_machine_t *m, int tag);
void any_addr_key(rkey_t *k, const reg_machine_t *m);
bool set_key(rkey_t *k, const reg_machine_t *m, size_t i);
extern const int set_tags[3]; /* the 'A', 'R', 'G' sets and idx entries */
int region_from(const MDB_val *k, const MDB_val *v, reg_region_t *r);
int hit_from_idx(const MDB_val *k, const MDB_val *v, reg_hit_t *h);
int hit_from_all(const MDB_val *k, const MDB_val *v, reg_hit_t *h);
int hit_from_peer(const MDB_val *k, const MDB_val *v, reg_hit_t *h);
int hit_from_flycast(const MDB_val *k, const MDB_val *v, reg_hit_t *h);
int hit_from_addr(const MDB_val *k, const MDB_val *v, reg_hit_t *h);

/* ---- reg_read.c: what the write path, check and upgrade read too ------------------------ */

/* Walks every key of db starting with prefix; decode turns entries into hits. */
int walk_prefix(reg_txn_t *t, int db, const rkey_t *prefix, decode_fn decode, reg_walk_fn fn,
                void *arg);
/* The length of the app of an idx key of org net, or -1. */
int idx_app(const MDB_val *k, uint32_t net);

/* ---- reg_write.c: what upgrade rebuilds with ----------------------------------------------- */

/* The org's serial becomes the generation this transaction will commit. */
int touch_org(reg_txn_t *t, uint32_t net);
/* Moves a Machine's index entries from record old to record m (either NULL: none). */
int reindex(reg_txn_t *t, const reg_machine_t *old, const reg_machine_t *m);

#endif
