/*
 * follow_impl.h — what the follower's files share and nothing else includes: the batch,
 * the changes kept, the follower's state, and the functions one file calls in another.
 * The contract for callers is include/follow.h; this header is not part of it.
 *
 *   follow.c          follow_run and its loop, live batches, the gatherer, the position
 *   follow_batch.c    the batch: copied, checked, deduplicated, parsed, applied; refusals
 *   follow_pending.c  changes kept for later, their file, and trying them again
 *   follow_sync.c     the full sync, its spread, follow_mirror
 *   follow_metrics.c  /metrics, /health, /ready
 *
 * Like follow.c, none of them learns the registry's key layout nor calls NATS other than
 * through kv.h.
 */
#ifndef INTERNALD_FOLLOW_IMPL_H
#define INTERNALD_FOLLOW_IMPL_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "follow.h"
#include "jsonl.h"
#include "kv.h"
#include "metrics_http.h"
#include "registry.h"

#define FULL_CHUNK 20000 /* records parsed at once during a full sync (or --batch) */
/* changes per live transaction: a follower behind catches up in few commits, and each
 * commit writes most of the pages a large registry's start/stops touch however many
 * changes it holds */
#define FOLLOW_BATCH_DEFAULT 100000
#define IDLE_CHECK_S         0.9   /* how often an idle follower checks the stream */
#define GATHER_LINGER_S      0.001 /* how long a batch waits for more after its first change */
#define BATCH_NAME           "batch"
#define TAIL_WAIT_MS         100 /* a full sync past the stream's last message as of its start */
#define TAIL_S               2.0
#define SYNC_FETCH_MS        30000 /* a full sync's fetch before the stream's end */
#define SYNC_FETCH_TRIES     4     /* fetches in a row that bring nothing: the sync fails */

/* a follower this many changes behind the head or more fetches them (kv_sub_open_catchup) */
#define CATCHUP_MIN 10000
/* allocations from this size are mapped apart (a batch's buffers: unmapped when freed) */
#define BATCH_MMAP_MIN (256 * 1024)

typedef struct {
	size_t key, val, len; /* offsets into the batch's strings */
	size_t why;           /* 1 + the offset of why it was refused; 0: not refused here */
	uint64_t seq;
	int op;
	bool bad, superseded, told;
	bool retry; /* refused by the registry's checks: may apply once later changes have */
} entry_t;

typedef struct {
	entry_t *e;
	size_t n, cap;
	char *str; /* keys and values (and the reasons entries were refused) */
	size_t used, str_cap;
	size_t *line; /* line (from 0) -> entry */
	size_t nlines, line_cap;
	jsonl_t *j;          /* the batch parsed (batch_parse) */
	size_t count;        /* records applied (the parse's count, kept once it is freed) */
	bool released;       /* live: applied, its changes and parse freed (batch_release) */
	uint64_t last;       /* the highest stream sequence in it */
	uint64_t head;       /* the stream\'s last sequence, as its last message told */
	uint64_t contact_ns; /* when that message came */
	int rc;              /* live: how waiting for its first change ended (-ETIMEDOUT: idle) */
	int prep_rc;         /* live: an error gathering or parsing it (the registry is not safe) */
	char err[JSONL_ERR_MAX];
} batch_t;

/* A change refused for now (an org's delete while it has Machines, a record before its
 * org): kept until it applies or a later change of its key supersedes it. */
typedef struct {
	char *key, *val; /* val: len bytes and a NUL (a put's value; "" for a delete) */
	size_t len;
	uint64_t seq;
	int op;
} pend_t;

typedef struct {
	reg_t *reg;
	const follow_opts_t *o;
	follow_stats_t st;
	kv_conn_t *conn;
	kv_bucket_t *b;
	kv_info_t info;
	batch_t batch;  /* the full sync's */
	uint64_t *skip; /* sequences refused (kept until the transaction holding them commits) */
	size_t nskip, skip_cap;
	uint64_t seq;          /* the position the transaction being written stores */
	uint64_t applied_base; /* st.applied when the full sync began (reg_write may rerun it) */
	follow_seen_fn seen;   /* follow_mirror's caller's look at each message */
	void *seen_arg;
	char state[64]; /* the last state logged */
	pend_t *pend;   /* changes refused for now, kept to be tried again */
	size_t npend, pend_cap;
	bool pend_saved;            /* the pending file exists */
	uint64_t tag_ns;            /* the applied_ns the transaction being written stores */
	uint64_t head;              /* the stream\'s last sequence, as NATS last told */
	uint64_t contact_ns;        /* when NATS last answered (wall clock, ns) */
	uint64_t changes, apply_ns; /* live batches' changes and time in their transactions */
	uint64_t start_ns;
	bool synced;
	/* what /metrics, /health and /ready show: a copy taken after each commit, under mu
	 * (the HTTP thread reads it) */
	pthread_mutex_t mu;
	struct {
		follow_stats_t st;
		uint64_t seq, head, contact_ns, applied_ns, changes, apply_ns;
		size_t kept;
		bool synced;
	} shown;
} follow_t;

typedef struct {
	follow_t *fl;
	batch_t *b;
	void (*applied)(void *arg); /* live: told once b is applied and only the commit is left */
	void *applied_arg;
} live_arg_t;

static inline const char *key_of(const batch_t *b, const entry_t *e)
{
	return b->str + e->key;
}

/* follow.c */
void fl_set_state(follow_t *fl, const char *state, const char *detail);
void fl_nap(follow_t *fl, double s);
int fl_put_position(follow_t *fl, reg_txn_t *txn);

/* follow_batch.c */
int fl_grow(void **p, size_t *cap, size_t need, size_t size);
void batch_reset(batch_t *b);
void batch_free(batch_t *b);
void batch_release(batch_t *b);
bool fl_skipped(const follow_t *fl, uint64_t seq);
void fl_report(follow_t *fl, batch_t *b);
int batch_add(batch_t *b, const kv_msg_t *m);
void batch_dedupe(batch_t *b);
int batch_parse(batch_t *b);
int batch_apply(batch_t *b, reg_txn_t *txn);

/* follow_pending.c */
void pend_supersede(follow_t *fl, const char *key, uint64_t seq);
int pend_add(follow_t *fl, const char *key, int op, const char *val, size_t len, uint64_t seq);
void pend_clear(follow_t *fl);
int pend_save(follow_t *fl);
void pend_forget(follow_t *fl);
bool pend_load(follow_t *fl, const reg_follow_t *f);
int pend_retry(follow_t *fl);

/* follow_sync.c */
int full_sync(follow_t *fl);
bool spread_wait(follow_t *fl);

/* follow_metrics.c */
void fl_show(follow_t *fl);
int fl_src_ready(void *arg, char *msg, size_t cap);
int fl_src_health(void *arg, char *msg, size_t cap);
int fl_src_render(void *arg, met_buf_t *b);

#endif
