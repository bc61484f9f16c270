/*
 * registry — the LMDB registry of orgs, Machines, peers and Flycast addresses.
 *
 * This header is the whole contract: nothing outside the registry's own files
 * (src/reg_*.c, which share src/reg_impl.h) knows the key layout. internald links the
 * read side only (reg_core.c, reg_codec.c, reg_read.c).
 * internalctl (and later the replication agent) writes through reg_write(); internald
 * reads through a read-only reg_txn_t per worker, renewed once per batch of packets.
 *
 * Errors: every function returns 0 (or a count, where said) on success and a negative
 * code on failure: -errno values for our own errors, LMDB's (negative) MDB_* codes for
 * the store's. reg_strerror() turns either into text.
 *
 * Strings handed to read callbacks point into the LMDB map: they are valid until the
 * transaction is reset, renewed or ended, are NOT NUL-terminated, and must not be freed.
 * Nothing on the read path allocates.
 */
#ifndef INTERNALD_REGISTRY_H
#define INTERNALD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REG_LABEL_MAX       63           /* every app, region, group, id, peer, metadata key */
#define REG_META_VALUE_MAX  255          /* a metadata value (any printable text) */
#define REG_REGION_NAME_MAX 127          /* a region's city name */
#define REG_STATE_MAX       31           /* a Machine state such as "started" */
#define REG_META_MAX        32           /* metadata pairs per Machine */
#define REG_CHECKS_MAX      16           /* health checks per Machine */
#define REG_MAPSIZE_DEFAULT (1ULL << 30) /* writer's initial map; grows on MDB_MAP_FULL */

typedef struct reg reg_t;
typedef struct reg_txn reg_txn_t;

enum reg_open_flags {
	REG_RDONLY = 1 << 0, /* internald: never writes, never creates */
	REG_NOSYNC = 1 << 1, /* skip fsync at commit: bulk tests only (durability, not safety) */
	REG_UPGRADE =
	        1 << 2, /* writer: also open a registry of the previous schema (reg_upgrade) */
	REG_WRITEMAP = 1 << 3, /* the writer's dirty pages go straight into the map (page cache),
	                        * not the heap: a million-record transaction in little memory */
};

/*
 * Opens (the writer: creates) the registry in directory dir (data.mdb, lock.mdb).
 * mapsize is the writer's initial map size (0: REG_MAPSIZE_DEFAULT). A read-only
 * registry (mapsize 0) maps the largest virtual window the process may have (1 TiB
 * down to the file's own size), so a growing writer rarely forces a remap; when it
 * does, the next reg_txn_begin/renew adopts the new size (waiting for this process's
 * other read snapshots to be reset). Safe to share between threads.
 * Allocates *out; release with reg_close(). Errors: -ENOENT (no registry at dir, read-only),
 * -EPROTO (written by the previous release: `internalctl upgrade` converts it in place;
 * reg_strerror says so), -EPROTONOSUPPORT (a newer or unknown schema), LMDB codes.
 * The writer creates dir and its files only when it opens (import creates nothing when
 * it refuses: internalctl removes what it created).
 */
int reg_open(reg_t **out, const char *dir, unsigned flags, size_t mapsize);
void reg_close(reg_t *reg);
/* Clears reader slots left by dead processes (kill -9). Returns how many, or < 0. */
int reg_reader_check(reg_t *reg);
/* The map size now in force (bytes). */
size_t reg_mapsize(const reg_t *reg);
const char *reg_strerror(int err);

/* ---- transactions ---------------------------------------------------------------- */

/* Begins a transaction (write = false: a read snapshot). Allocates *out. */
int reg_txn_begin(reg_t *reg, bool write, reg_txn_t **out);
/* Read-only: drop the snapshot (reset) / take the newest committed one (renew). */
void reg_txn_reset(reg_txn_t *txn);
int reg_txn_renew(reg_txn_t *txn);
/* The snapshot's LMDB transaction id: unchanged id, unchanged registry. */
uint64_t reg_txn_id(reg_txn_t *txn);
/* Write: bumps the generation, commits and frees txn (also on failure). */
int reg_txn_commit(reg_txn_t *txn);
/* Ends any transaction without committing, frees txn. NULL is a no-op. */
void reg_txn_abort(reg_txn_t *txn);

/*
 * Runs fn(txn, arg) in one write transaction and commits it. When the map fills up
 * (MDB_MAP_FULL) the transaction is thrown away, the map doubled and fn run again from
 * the start: fn must depend only on arg and the registry. fn's non-zero return aborts
 * and is returned unchanged. All or nothing.
 */
typedef int (*reg_write_fn)(reg_txn_t *txn, void *arg);
int reg_write(reg_t *reg, reg_write_fn fn, void *arg);

/* ---- records as the write API takes them (NUL-terminated, caller-owned) ----------- */

typedef struct {
	const char *key, *value;
} reg_meta_t;

/* A health check as the Machines API reports it: its name (1..REG_LABEL_MAX printable
 * bytes) and status. A Machine with a critical one is left out of the healthy. names. */
enum reg_check_status { REG_CHECK_PASSING, REG_CHECK_WARNING, REG_CHECK_CRITICAL };
typedef struct {
	const char *name;
	uint8_t status; /* enum reg_check_status */
} reg_check_t;

/* Metadata keys are 1..REG_LABEL_MAX bytes, values 0..REG_META_VALUE_MAX, any text
 * without NUL, stored as given. A pair whose key and value are both names_meta_label()s
 * is queryable (indexed lower-cased); others are only stored. */
typedef struct {
	const char *id, *app, *region, *group, *state;
	uint32_t net; /* org network: bits 16..47 of the address */
	uint8_t ip[16];
	const reg_meta_t *meta;
	size_t nmeta;
	bool skip_dns;             /* "dns":{"skip_registration":true}: in no name at all, kept */
	const reg_check_t *checks; /* by name; a change of a status is a write like a stop */
	size_t nchecks;
} reg_machine_t;

/* A machine decoded from the store, with room for its strings. */
typedef struct {
	reg_machine_t m;
	char id[REG_LABEL_MAX + 1], app[REG_LABEL_MAX + 1], region[REG_LABEL_MAX + 1];
	char group[REG_LABEL_MAX + 1], state[REG_STATE_MAX + 1];
	reg_meta_t meta[REG_META_MAX];
	char metabuf[REG_META_MAX][2][REG_META_VALUE_MAX + 1];
	reg_check_t checks[REG_CHECKS_MAX];
	char checkbuf[REG_CHECKS_MAX][REG_LABEL_MAX + 1];
} reg_machine_buf_t;

/* ---- write API (txn from reg_write or reg_txn_begin(write)) ------------------------ */

/* Org slug <-> network. -EEXIST: the slug has another network, or the network another slug. */
int reg_put_org(reg_txn_t *txn, const char *slug, uint32_t net);
/* Upserts a Machine; its indexes follow its state. -EADDRINUSE: a started Machine or a
 * peer already holds that address. -ENAMETOOLONG, -E2BIG: a string or metadata past the limits. */
int reg_put_machine(reg_txn_t *txn, const reg_machine_t *m);
/* Sets the state of an existing Machine (-ENOENT if none). */
int reg_set_state(reg_txn_t *txn, const char *id, const char *state);
/* -ENOENT if there is no such Machine. */
int reg_delete_machine(reg_txn_t *txn, const char *id);
/* Upserts a peer. -EADDRINUSE: a started Machine or another peer holds that address
 * (checked before anything is written: the peer stays as it was). */
int reg_put_peer(reg_txn_t *txn, uint32_t net, const char *name, const uint8_t ip[16],
                 const char *region);
int reg_delete_peer(reg_txn_t *txn, uint32_t net, const char *name);
int reg_put_flycast(reg_txn_t *txn, uint32_t net, const char *app, const uint8_t ip[16]);
int reg_delete_flycast(reg_txn_t *txn, uint32_t net, const char *app, const uint8_t ip[16]);
/* Empties every table (import --replace); the generation goes on counting. */
int reg_clear(reg_txn_t *txn);

/* A region: code (a DNS label), city name, coordinates in degrees. Regions belong to no
 * org. Deleting one leaves the Machines that name it as they are (nearest puts them
 * last). -EINVAL: coordinates out of range. */
int reg_put_region(reg_txn_t *txn, const char *code, const char *name, double lat, double lon);
int reg_delete_region(reg_txn_t *txn, const char *code);

/*
 * Converts a registry of the previous schema (3, release 0a7288a) in place, in txn (from
 * a registry opened with REG_UPGRADE): re-encodes every Machine, rebuilds every index,
 * gives every org its serial. Regions are not in schema 3: the caller adds them in the
 * same transaction. Returns 1 if it upgraded, 0 if the registry was already current.
 */
int reg_upgrade(reg_txn_t *txn);

/* ---- point reads (any txn) ------------------------------------------------------------ */

uint64_t reg_generation(reg_txn_t *txn);
/* The org's SOA serial: the generation of the last write that changed one of its records
 * (org, Machines, peers, Flycast). 0 for an org never written. */
uint32_t reg_org_serial(reg_txn_t *txn, uint32_t net);
/* When the last write transaction committed (ns since the epoch), 0 if never. */
uint64_t reg_written_ns(reg_txn_t *txn);
/* -ENOENT if unknown. */
int reg_org_net(reg_txn_t *txn, const char *slug, size_t len, uint32_t *net);
/* Writes the slug (NUL-terminated) into buf. -ENOENT if unknown, -ENOSPC if cap too small. */
int reg_org_slug(reg_txn_t *txn, uint32_t net, char *buf, size_t cap);
/* Decodes a Machine into *out. -ENOENT if none. */
int reg_get_machine(reg_txn_t *txn, const char *id, reg_machine_buf_t *out);

/* A region as the store holds it (strings into the map, not NUL-terminated). */
typedef struct {
	const char *code, *name;
	uint8_t code_len, name_len;
	double lat, lon;
} reg_region_t;
/* One region by code: 0, or -ENOENT. Allocation-free (nearest calls it per answer). */
int reg_get_region(reg_txn_t *txn, const char *code, size_t len, reg_region_t *out);
typedef int (*reg_region_fn)(const reg_region_t *r, void *arg);
/* Every region, by code. */
int reg_walk_regions(reg_txn_t *txn, reg_region_fn fn, void *arg);

/* ---- the read path: range walks over started Machines (no allocation) ----------------- */

enum reg_hit_kind { REG_HIT_MACHINE, REG_HIT_PEER };

typedef struct {
	int kind;
	uint32_t net;
	const uint8_t *ip; /* 16 bytes */
	const char *id;    /* Machine id, or the peer's name */
	const char *app;   /* NULL for a peer */
	const char *region;
	uint8_t id_len, app_len, region_len;
} reg_hit_t;

/* Called once per record, in key order; a non-zero return stops the walk. */
typedef int (*reg_walk_fn)(const reg_hit_t *hit, void *arg);

/*
 * Each walk returns the number of records visited (>= 0) or a negative error. Names are
 * compared byte for byte: pass them lower-cased. Only started Machines are walked.
 * Walks share the transaction's cursors: a callback must not start another walk in the
 * same transaction (point reads are fine).
 *   app:         the app's Machines, by id
 *   app_region:  the app's Machines in region, by id
 *   org:         every Machine of the org, by app then id (_instances)
 *   peers:       the org's peers, by name (hit->id is the name)
 *   flycast:     the app's Flycast addresses in the org, by address (only ip is set)
 */
int reg_walk_app(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len, reg_walk_fn fn,
                 void *arg);
int reg_walk_app_region(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len,
                        const char *region, size_t region_len, reg_walk_fn fn, void *arg);
int reg_walk_org(reg_txn_t *txn, uint32_t net, reg_walk_fn fn, void *arg);
int reg_walk_peers(reg_txn_t *txn, uint32_t net, reg_walk_fn fn, void *arg);
int reg_walk_flycast(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len, reg_walk_fn fn,
                     void *arg);
/* The all. forms: the same walks over Machines in every state (never skip_dns ones). */
int reg_walk_all_app(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len, reg_walk_fn fn,
                     void *arg);
int reg_walk_all_org(reg_txn_t *txn, uint32_t net, reg_walk_fn fn, void *arg);

/*
 * The addresses of one AAAA answer, a page at a time: fn(ips, n, arg) gets n contiguous
 * 16-byte addresses (in address order) and returns non-zero to stop; fn NULL just counts.
 *   REG_SET_APP     the app's started Machines            (sub, val unused)
 *   REG_SET_REGION  ... in region sub
 *   REG_SET_GROUP   ... of process group sub
 *   REG_SET_META    ... whose metadata has key sub = value val
 * Returns how many addresses the set holds (0: the name does not exist), or < 0.
 */
enum reg_set_kind {
	REG_SET_APP = 'A',
	REG_SET_REGION = 'R',
	REG_SET_GROUP = 'G',
	REG_SET_META = 'M',
	REG_SET_META_KEY = 'K' /* ... that have key sub, any value */
};
typedef int (*reg_ips_fn)(const uint8_t *ips, size_t n, void *arg);
int reg_ips(reg_txn_t *txn, uint32_t net, int kind, const char *app, size_t app_len,
            const char *sub, size_t sub_len, const char *val, size_t val_len, reg_ips_fn fn,
            void *arg);

/*
 * The healthy. names: how many of the app's started Machines have a critical check
 * (*count; 0 leaves every set whole), and whether the one at ip does (1), or not (0).
 * One seek each, allocation-free; < 0 on error.
 */
int reg_count_critical(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len,
                       uint32_t *count);
int reg_critical(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len,
                 const uint8_t ip[16]);

/* Names walks: apps of the org with a started Machine; regions of an app with one.
 * fn gets (name, len, count of started Machines, arg). */
typedef int (*reg_name_fn)(const char *name, size_t len, uint32_t count, void *arg);
int reg_walk_apps(reg_txn_t *txn, uint32_t net, reg_name_fn fn, void *arg);
int reg_walk_app_regions(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len,
                         reg_name_fn fn, void *arg);
/* Regions of an app with a Machine in any state (all.regions). */
int reg_walk_all_app_regions(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len,
                             reg_name_fn fn, void *arg);
/* 1 if some started Machine of the app has a queryable metadata pair, 0 if none, < 0. */
int reg_has_meta(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len);
/* Started Machines of an app (0 if none, the app is then absent from DNS), and of an app
 * in one region. */
int reg_count_app(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len, uint32_t *count);
int reg_count_app_region(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len,
                         const char *region, size_t region_len, uint32_t *count);

/* One started Machine of an app by id; one peer by name. 0, or -ENOENT. */
int reg_find_vm(reg_txn_t *txn, uint32_t net, const char *app, size_t app_len, const char *id,
                size_t id_len, reg_hit_t *hit);
int reg_find_peer(reg_txn_t *txn, uint32_t net, const char *name, size_t len, reg_hit_t *hit);
/* The started Machine or peer at exactly ip (exact) or, failing that and when !exact, the
 * one whose /112 holds ip. 0, or -ENOENT. */
int reg_find_addr(reg_txn_t *txn, const uint8_t ip[16], bool exact, reg_hit_t *hit);
/* A Machine in any state at ip or in ip's /112 (the querier of nearest): sets kind, net,
 * ip, id and region (app NULL). 0, or -ENOENT. */
int reg_find_any_addr(reg_txn_t *txn, const uint8_t ip[16], reg_hit_t *hit);

/* ---- whole-registry walks (internalctl: export, ls, zone, check) ----------------------- */

typedef int (*reg_org_fn)(const char *slug, size_t len, uint32_t net, void *arg);
typedef int (*reg_machine_fn)(const reg_machine_t *m, void *arg);
int reg_walk_orgs(reg_txn_t *txn, reg_org_fn fn, void *arg);
int reg_walk_machines(reg_txn_t *txn, reg_machine_fn fn, void *arg);
/* Every peer / Flycast address of every org, by org. */
int reg_walk_all_peers(reg_txn_t *txn, reg_walk_fn fn, void *arg);
int reg_walk_all_flycast(reg_txn_t *txn, reg_walk_fn fn, void *arg);

/* Verifies every index entry against the primary records. report(msg, arg) is called for
 * each mismatch. Returns the number of mismatches (0: consistent) or < 0. */
int reg_check(reg_txn_t *txn, void (*report)(const char *msg, void *arg), void *arg);

typedef struct {
	uint64_t generation;
	size_t orgs, machines, started, peers, flycast, index_entries;
	size_t map_size, map_used, page_size;
	size_t regions;
} reg_stats_t;
int reg_stats(reg_txn_t *txn, reg_stats_t *out);

/* ---- the follower's position (internalctl follow) ---------------------------------------------
 * Stored in the same write transaction as the changes it covers, so a restart resumes
 * exactly where the last commit ended. reg_clear() keeps it (a full sync overwrites it).
 * Strings are NUL-terminated. */
typedef struct {
	char bucket[64];     /* the followed KV bucket's name */
	char stream[64];     /* the bucket's identity (its stream's creation time), "" if unknown */
	uint64_t seq;        /* last stream sequence applied */
	uint64_t applied_ns; /* when it was applied (ns since the epoch) */
	uint64_t head;       /* the bucket's last sequence as the follower last heard of it */
	uint64_t contact_ns; /* the follower's last contact with NATS (ns since the epoch; 0 never)
	                      */
	bool synced; /* a full sync has committed; false: the follower is waiting for its first */
} reg_follow_t;
/* -EROFS on a read transaction, -ENAMETOOLONG if a string is not NUL-terminated. */
int reg_put_follow(reg_txn_t *txn, const reg_follow_t *f);
/* -ENOENT (MDB_NOTFOUND mapped) when the registry follows nothing, -EINVAL if damaged. */
int reg_get_follow(reg_txn_t *txn, reg_follow_t *out);

/* Does org net hold a started Machine or a peer whose address begins with the first
 * nibbles (0-32) nibbles of ip? 1 yes, 0 no, < 0 an error. Another org's addresses
 * never count, nor those for which hidden(hit) is true (NULL: every one counts; the
 * caller decides what DNS hides, e.g. interactive-* peers). One seek plus a step past
 * each hidden record, no allocation (the reverse zone's empty non-terminals). */
int reg_addr_prefix(reg_txn_t *txn, uint32_t net, const uint8_t ip[16], unsigned nibbles,
                    bool (*hidden)(const reg_hit_t *hit));

/* Deletes an org that holds nothing any more (no Machine in any state, peer or Flycast
 * address): the follower applies a KV delete of org.<slug> with it. -ENOENT if unknown,
 * -ENOTEMPTY while the org still has records. */
int reg_delete_org(reg_txn_t *txn, const char *slug);

#endif
