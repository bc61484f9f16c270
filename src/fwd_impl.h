/*
 * fwd_impl.h — what the forwarder's files share and nothing else includes: a query of the
 * pool, a connection to an upstream, the forwarder itself, and the calls between the
 * pieces. The contract for callers is include/forward.h; this header is not part of it.
 *
 *   forward.c       fwd_resolve and the cache policy, the pool and the per-source/org
 *                   shares, the in-flight table (owners, waiters, the mailbox), answers
 *                   back to clients, the upstream query, create/close/reconf
 *   fwd_upstream.c  UDP and TCP to upstreams, tries and their timers, the up/down state
 *                   and back-off
 */
#ifndef FWD_IMPL_H
#define FWD_IMPL_H

#include "forward.h"

#include <pthread.h>
#include <stdatomic.h>

#include "srcshare.h"

#define QUERY_MAX 4096 /* a client query larger than this is not forwarded */

typedef struct tconn tconn_t;
typedef struct fq fq_t;

/* An owner's upstream answer, shared by the waiters it wakes (failed: len 0). */
typedef struct {
	atomic_int refs;
	size_t len;
	uint8_t data[];
} fresult_t;

/* One UDP try: its own handle, so a late close never races the next try. */
typedef struct {
	uv_udp_t h;
	fq_t *q; /* NULL once the try is over */
	fwd_t *f;
} utry_t;

struct fq {
	fwd_t *f;
	struct fq *next_free, *tnext, *tprev;
	fwd_done_fn done;
	void *arg;
	bool active, retry_now, use_tcp, client_tcp;
	bool slotted; /* counts against its source's share (slot) */
	uint32_t slot;
	bool org_slotted; /* and against its org's (org_slot) */
	uint32_t org_slot;
	uint64_t sent_ms; /* the loop's time the try went */
	bool cut_short;   /* this try waits only what is left of the budget */
	size_t max;
	uint8_t msg[QUERY_MAX]; /* the client's query; our ID in bytes 0-1 during a try */
	size_t len;
	uint16_t up_id;
	wire_query_t wq; /* the client's query, parsed */
	int up, next_up, tries;
	uint64_t deadline;
	uv_timer_t timer; /* per try, and the deferred next try */
	utry_t *udp;
	tconn_t *tc;
	uint64_t sent_ns;        /* when the try was sent (uv_hrtime): the latency histogram */
	struct timespec dt_sent; /* dnstap: when this try went upstream, */
	dt_end_t dt_local;       /* and from which of our addresses */
	cache_waiter_t cw;       /* in the cache's table of questions in flight */
	bool owner;              /* asks upstream for the waiters of its key */
	bool waiting;            /* waits for another query's answer */
	bool client_done;        /* the client has its answer (stale, or no client: prefetch) */
	uv_timer_t ctimer;       /* the client response timer */
	fresult_t *result;       /* handed over by an owner, in the mailbox */
	struct fq *mnext;        /* the mailbox */
};

/* One TCP write: its own request and copy of the message, so a try that ends (or the
 * next try of the same query) never touches bytes libuv may still be sending. */
typedef struct {
	uv_write_t req;
	tconn_t *tc;
	uint8_t data[];
} twrite_t;

struct tconn {
	fwd_t *f;
	int up, handles;
	uv_tcp_t h;
	uv_connect_t creq;
	uv_timer_t idle;
	bool connected, closing;
	fq_t *inflight;
	uint8_t *buf;
	size_t len, cap;
};

struct fwd {
	uv_loop_t *loop;
	const fwd_conf_t *conf;
	fq_t *pool, *free;
	srcshare_t *share; /* queries in flight per source */
	unsigned share_max;
	srcshare_t *org_share; /* queries in flight per org (wire_query_t.scope) */
	unsigned org_share_max;
	uint64_t answered_ms[CFG_UPSTREAM_MAX]; /* the loop's time of each one's last answer */
	/* the latest send time of a try that timed out with no answer from its upstream
	 * since; judged after the loop has read its sockets (0: none waiting) */
	uint64_t suspect_ms[CFG_UPSTREAM_MAX];
	uv_check_t judge;      /* runs the judgement right after the loop's poll */
	uint64_t fd_logged_ms; /* the loop's time EMFILE/ENFILE was last logged (0: never) */
	int handles;           /* pool timers + UDP handles + connections still open */
	bool closing;
	uint64_t down_until[CFG_UPSTREAM_MAX];
	tconn_t *tconn[CFG_UPSTREAM_MAX];
	unsigned next_up;
	uint8_t rnd[256];
	size_t rnd_used;
	uint8_t rbuf[65536], obuf[65536];
	fwd_stats_t stats;
	bool down_logged[CFG_UPSTREAM_MAX]; /* logged once per state change */
	dt_worker_t *dt;                    /* NULL: no dnstap */
	uv_async_t wake;                    /* an owner in another worker handed answers over */
	pthread_mutex_t mlock;              /* the mailbox, written by other workers */
	fq_t *mail;
	bool mclosed;
};

/* forward.c */
void fwd_maybe_free(fwd_t *f);
void fwd_flight_end(fq_t *q, const uint8_t *raw, size_t len);
void fwd_finish(fq_t *q, const uint8_t *resp, size_t len);

/* fwd_upstream.c */
void fwd_start_try(fq_t *q);
void fwd_transport_stop(fq_t *q);
void fwd_tconn_close(tconn_t *tc, bool down);
void fwd_judge(uv_check_t *h);

#endif
