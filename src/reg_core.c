/*
 * reg_core.c — the registry's environment and transactions: open and close, the read
 * snapshot (renewed per batch, adopting a map the writer grew), write transactions and
 * reg_write (retried on a full map), the generation every commit counts on, errors.
 */
#include "reg_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <time.h>

#include "clock.h"

/* A read-only map is virtual address space only: the larger, the rarer a remap after
 * the writer grows the file. Smaller windows are tried where address space is limited
 * (ulimit -v, valgrind); 0 means the size the writer last set. */
static const size_t reader_mapsizes[] = {1ULL << 40, 1ULL << 36, 1ULL << 32, 0};

static const char *const db_names[DB_N] = {"meta",  "orgs",    "orgnets", "machines",
                                           "peers", "flycast", "idx",     "addr",
                                           "sets",  "regions", "serials", "all"};
static const unsigned db_flags[DB_N] = {[DB_SETS] = MDB_DUPSORT | MDB_DUPFIXED};

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
	if (err == -EBADMSG)
		return "data.mdb is shorter than its own header says: the file was cut short (a "
		       "copy or a disk that filled); restore it from a backup, or import the "
		       "registry again into a new directory";
	/* LMDB's own codes run from MDB_KEYEXIST (-30799) up to MDB_LAST_ERRCODE; its
	 * message names the code (MDB_INVALID: File is not an LMDB file) */
	if (err >= MDB_KEYEXIST && err <= MDB_LAST_ERRCODE)
		return mdb_strerror(err);
	return strerror(err < 0 ? -err : err);
}

/* ---- environment -------------------------------------------------------------------- */

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
		put_be32(buf, SCHEMA_VERSION);
		v = (MDB_val){4, buf};
		if ((rc = mdb_put(txn, reg->dbi[DB_META], &k, &v, 0)))
			goto fail;
	} else if (rc) {
		goto fail;
	} else if (v.mv_size != 4 || (get_be32(v.mv_data) != SCHEMA_VERSION &&
	                              !(upgrade && older(get_be32(v.mv_data))))) {
		bool prev = v.mv_size == 4 && older(get_be32(v.mv_data));
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

/*
 * LMDB reads data.mdb through its map: a page past the end of a file cut short raises
 * SIGBUS, in internald and in internalctl alike. So before mdb_env_open the two meta
 * pages are read with pread (LMDB's layout, 64-bit: page header 16 bytes, then magic,
 * version, address, mapsize, two 48-byte MDB_db of which the first's md_pad is the page
 * size, last page number, txnid) and the newest one's last page must lie inside the
 * file. Returns 0 (also when there is no file, or no LMDB header: mdb_env_open says
 * what is wrong), or -EBADMSG.
 */
static int check_file_size(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct stat st;
	uint8_t m[160];
	uint64_t need = 0, best = 0;
	uint32_t psize = 0;
	if (fstat(fd, &st) == 0 && pread(fd, m, sizeof(m), 0) == (ssize_t)sizeof(m)) {
		memcpy(&psize, m + 40, 4);
		if (psize < 512 || psize > 65536 || (psize & (psize - 1)))
			psize = 0;
	}
	for (int i = 0; psize && i < 2; i++) {
		uint32_t magic;
		uint64_t last, txnid;
		if (pread(fd, m, sizeof(m), (off_t)i * psize) != (ssize_t)sizeof(m)) {
			need = need ? need : 2 * (uint64_t)psize; /* the second meta page is cut */
			break;
		}
		memcpy(&magic, m + 16, 4);
		memcpy(&last, m + 136, 8);
		memcpy(&txnid, m + 144, 8);
		if (magic == 0xBEEFC0DE && (i == 0 || txnid >= best))
			best = txnid, need = (last + 1) * psize;
	}
	close(fd);
	return psize && need && (uint64_t)st.st_size < need ? -EBADMSG : 0;
}

static int env_open(reg_t *reg, const char *dir, size_t mapsize)
{
	bool rdonly = reg->flags & REG_RDONLY;
	int rc = check_file_size(dir);
	if (rc)
		return rc;
	rc = mdb_env_create(&reg->env);
	if (rc)
		return rc;
	if ((rc = mdb_env_set_maxdbs(reg->env, DB_N)) ||
	    (rc = mdb_env_set_maxreaders(reg->env, 512)) ||
	    (mapsize && (rc = mdb_env_set_mapsize(reg->env, mapsize))))
		goto fail;
	unsigned eflags = MDB_NOTLS | (rdonly ? MDB_RDONLY : 0) |
	                  (reg->flags & REG_NOSYNC ? MDB_NOSYNC : 0) |
	                  (!rdonly && reg->flags & REG_WRITEMAP ? MDB_WRITEMAP : 0);
	if ((rc = mdb_env_open(reg->env, dir, eflags, 0640)))
		goto fail;
	if (!rdonly) { /* internald reads as a user of the registry's group (internald(8),
		        * --user): it writes the reader table (lock.mdb), never data.mdb; every
		        * org's Machines are no other local user's to read */
		char path[4096];
		snprintf(path, sizeof(path), "%s/data.mdb", dir);
		if (chmod(path, 0640) != 0)
			errno = 0; /* not its owner: the mode stays as the owner made it */
		snprintf(path, sizeof(path), "%s/lock.mdb", dir);
		if (chmod(path, 0660) != 0)
			errno = 0;
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

uint64_t reg_txn_id(reg_txn_t *t)
{
	return mdb_txn_id(t->txn);
}

/* Every commit: the generation counts on, and the time of the write is kept beside it. */
static int bump_generation(reg_txn_t *t)
{
	uint8_t b[8], w[8];
	put_be64(b, reg_generation(t) + 1);
	put_be64(w, clock_wall_ns());
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

/*
 * A commit that failed with EIO or ENOSPC. LMDB reports a short write (the file system
 * filled in the middle of its pwrite) as EIO: with next to no space left it is ENOSPC.
 * The pages the failed commit wrote past the last committed one are cut off again
 * (under the writer's lock, so no other writer is in the middle of growing it); with
 * MDB_WRITEMAP the file is as large as the map from the start and is left so.
 */
static int write_failed(reg_t *reg, int rc)
{
	int fd;
	struct statvfs vfs;
	MDB_stat ms;
	if (mdb_env_get_fd(reg->env, &fd) || mdb_env_stat(reg->env, &ms))
		return rc;
	if (rc == -EIO && fstatvfs(fd, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < 64 * (uint64_t)ms.ms_psize)
		rc = -ENOSPC;
	MDB_txn *txn;
	MDB_envinfo info;
	struct stat st;
	if (!(reg->flags & REG_WRITEMAP) && mdb_txn_begin(reg->env, NULL, 0, &txn) == 0) {
		mdb_env_info(reg->env, &info);
		off_t need = (off_t)(info.me_last_pgno + 1) * ms.ms_psize;
		if (fstat(fd, &st) == 0 && st.st_size > need && ftruncate(fd, need))
			errno = 0; /* the file stays grown; the registry is still the old one */
		mdb_txn_abort(txn);
	}
	return rc;
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
		if (!rc) {
			rc = reg_txn_commit(t);
			if (rc == -EIO || rc == -ENOSPC)
				return write_failed(reg, rc);
		} else {
			reg_txn_abort(t);
		}
		if (rc != MDB_MAP_FULL)
			return rc;
		reg->mapsize *= 2;
		if ((rc = mdb_env_set_mapsize(reg->env, reg->mapsize)))
			return map_err(rc);
	}
}

uint64_t reg_generation(reg_txn_t *t)
{
	MDB_val v;
	if (raw_get(t, DB_META, "generation", 10, &v) || v.mv_size != 8)
		return 0;
	return get_be64(v.mv_data);
}

uint64_t reg_written_ns(reg_txn_t *t)
{
	MDB_val v;
	if (raw_get(t, DB_META, "written", 7, &v) || v.mv_size != 8)
		return 0;
	return get_be64(v.mv_data);
}
