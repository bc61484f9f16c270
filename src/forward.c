/*
 * forward.c — the upstream client of one worker (internald(7), FORWARDING), on the worker's
 * own uv_loop.
 *
 * A query is an entry of a fixed pool (the in-flight cap). Each try goes to one upstream:
 * over UDP from a fresh socket (a random source port, connected so the kernel also
 * filters the peer) with a fresh random ID; over TCP on the worker's one pipelined
 * connection to that upstream. An answer counts only when its ID and question match;
 * TC moves the try to TCP. A try that times out marks its upstream down for a back-off
 * period and the next upstream is tried, until the tries or the budget run out: then
 * SERVFAIL. It must never block the loop nor call back inside fwd_resolve.
 *
 * fwd_resolve is the one way in: the cache's answer (a hit late in its TTL also starts a
 * background refresh), else a query upstream, else SERVFAIL; the query is the parse
 * answer.c made, not parsed again. The server never reads the cache itself.
 *
 * With the process's cache (conf->cache) a query first joins the cache's table of
 * questions in flight: the first of a key (in any worker) is its owner and asks
 * upstream; the others wait. The owner stores the answer in the cache and hands a
 * reference-counted copy to each waiter through the waiter's forwarder mailbox, woken
 * by a uv_async on the waiter's own loop. A client whose answer takes longer than the
 * client response timer gets a stale answer from the cache while the owner's query goes
 * on and refreshes the entry.
 */
#include "forward.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "org.h"
#include "srcshare.h"
#include "wire.h"

#define QUERY_MAX   4096  /* a client query larger than this is not forwarded */
#define BACKOFF_MS  5000  /* how long a timed-out upstream is skipped */
#define TCP_IDLE_MS 10000 /* an upstream connection with nothing in flight closes */
#define EDNS_SIZE   1232  /* toward upstreams, unless the conf says otherwise */
#define SHARE_DIV   8     /* one source holds at most 1/8 of the pool (at least SHARE_MIN) */
#define SHARE_MIN   4
#define ORG_DIV     4 /* one org (all its sources) at most 1/4 (at least 2 * SHARE_MIN) */

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

static void start_try(fq_t *q);
static void tcp_send(fq_t *q);
static void on_q_timer(uv_timer_t *t);
static void on_tconn_idle(uv_timer_t *t);
static void mark_down(fwd_t *f, int up, const char *why);

/* ---- helpers ------------------------------------------------------------------------------ */

static uint16_t random_id(fwd_t *f)
{
	if (f->rnd_used + 2 > sizeof(f->rnd)) {
		if (getrandom(f->rnd, sizeof(f->rnd), 0) != (ssize_t)sizeof(f->rnd))
			log_warn("event=getrandom status=failed reason=\"query IDs are weaker\"");
		f->rnd_used = 0;
	}
	uint16_t v = (uint16_t)(f->rnd[f->rnd_used] << 8 | f->rnd[f->rnd_used + 1]);
	f->rnd_used += 2;
	return v;
}

static void maybe_free(fwd_t *f)
{
	if (f->closing && f->handles == 0) {
		pthread_mutex_destroy(&f->mlock);
		srcshare_free(f->share);
		srcshare_free(f->org_share);
		free(f->pool);
		free(f);
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	fwd_t *f = h->data;
	f->handles--;
	maybe_free(f);
}

static void release(fq_t *q)
{
	fwd_t *f = q->f;
	if (q->active)
		return;
	if (q->slotted)
		srcshare_give(f->share, q->slot);
	if (q->org_slotted)
		srcshare_give(f->org_share, q->org_slot);
	q->slotted = q->org_slotted = false;
	q->next_free = f->free;
	f->free = q;
	MET_ADD(f->stats.inflight, (uint64_t)-1);
}

/* dnstap: FORWARDER_QUERY for the try that just went out on h (our end: its address). */
static void tap_query(fq_t *q, bool tcp, const uv_handle_t *h)
{
	struct sockaddr_storage ss = {0};
	int len = sizeof(ss);
	dt_end_t up;
	if ((tcp ? uv_tcp_getsockname((const uv_tcp_t *)h, (struct sockaddr *)&ss, &len)
	         : uv_udp_getsockname((const uv_udp_t *)h, (struct sockaddr *)&ss, &len)) != 0)
		ss.ss_family = AF_UNSPEC;
	dt_end_from_sockaddr(&q->dt_local, (const struct sockaddr *)&ss);
	dt_end_from_sockaddr(&up, (const struct sockaddr *)&q->f->conf->upstreams[q->up].ss);
	clock_gettime(CLOCK_REALTIME, &q->dt_sent);
	dt_log_forwarder_query(q->f->dt, tcp, &q->dt_local, &up, q->msg, q->len, &q->dt_sent);
}

/* dnstap: FORWARDER_RESPONSE for the upstream's answer r to the current try. */
static void tap_response(fq_t *q, const uint8_t *r, size_t len)
{
	dt_end_t up;
	dt_end_from_sockaddr(&up, (const struct sockaddr *)&q->f->conf->upstreams[q->up].ss);
	dt_log_forwarder_response(q->f->dt, q->use_tcp, &q->dt_local, &up, &q->dt_sent, r, len);
}

/* ---- transports ------------------------------------------------------------------------------ */

static void on_udp_closed(uv_handle_t *h)
{
	utry_t *u = h->data;
	fwd_t *f = u->f;
	free(u);
	f->handles--;
	maybe_free(f);
}

static void udp_stop(fq_t *q)
{
	if (!q->udp)
		return;
	q->udp->q = NULL;
	uv_close((uv_handle_t *)&q->udp->h, on_udp_closed);
	q->udp = NULL;
}

static void tconn_detach(fq_t *q)
{
	tconn_t *tc = q->tc;
	if (!tc)
		return;
	if (q->tprev)
		q->tprev->tnext = q->tnext;
	else
		tc->inflight = q->tnext;
	if (q->tnext)
		q->tnext->tprev = q->tprev;
	q->tc = NULL, q->tnext = q->tprev = NULL;
	if (!tc->inflight && !tc->closing)
		uv_timer_start(&tc->idle, on_tconn_idle, TCP_IDLE_MS, 0);
}

static void transport_stop(fq_t *q)
{
	udp_stop(q);
	tconn_detach(q);
}

/* The try failed: go on with the next one from the loop, not from this call stack. */
static void fail_try(fq_t *q, bool upstream_down)
{
	fwd_t *f = q->f;
	if (upstream_down)
		mark_down(f, q->up, "unreachable");
	transport_stop(q);
	q->retry_now = true;
	uv_timer_start(&q->timer, on_q_timer, 0, 0);
}

/* ---- finishing ------------------------------------------------------------------------------- */

static void result_put(fresult_t *r)
{
	if (r && atomic_fetch_sub(&r->refs, 1) == 1)
		free(r);
}

/* Runs on the owner's thread with the flight table locked: only queue. */
static void wake_waiter(cache_waiter_t *w, void *ctx)
{
	fq_t *q = w->arg;
	fwd_t *f = q->f;
	fresult_t *r = ctx;
	pthread_mutex_lock(&f->mlock);
	if (!f->mclosed) {
		if (r)
			atomic_fetch_add(&r->refs, 1);
		q->result = r;
		q->mnext = f->mail;
		f->mail = q;
		uv_async_send(&f->wake);
	}
	pthread_mutex_unlock(&f->mlock);
}

/* The owner has its upstream answer raw (or none: every try failed): into the cache,
 * and to every query waiting for the same question. */
static void flight_end(fq_t *q, const uint8_t *raw, size_t len)
{
	fwd_t *f = q->f;
	cache_t *c = f->conf->cache;
	if (!q->owner)
		return;
	q->owner = false;
	uint64_t now = uv_now(f->loop);
	fresult_t *r = NULL;
	if (raw) {
		cache_insert(c, &q->wq, raw, len, now); /* what it does not keep is only relayed */
		if ((r = malloc(sizeof(*r) + len))) {   /* for other clients: no EDNS options */
			atomic_init(&r->refs, 1);
			memcpy(r->data, raw, len);
			r->len = wire_strip_options(r->data, len);
		}
	} else {
		cache_insert_servfail(c, q->msg, q->len, &q->wq, now);
	}
	cache_flight_done(c, &q->cw, wake_waiter, r);
	result_put(r);
}

/* RFC 8914 on an answer the cache wrote into out (len bytes, at most max for its client;
 * r: cache_lookup's verdict): 3 Stale Answer (RFC 8767), 13 Cached Error on a SERVFAIL
 * kept from a failed forward, none on a fresh answer (an upstream's own EDE is in it
 * already). Only when its client sent EDNS and it fits. */
static size_t cached_ede(uint8_t *out, size_t len, size_t max, const wire_query_t *q, int r)
{
	if ((out[3] & 0x0f) == WIRE_SERVFAIL)
		return wire_add_ede(out, len, max, q, WIRE_EDE_CACHED_ERROR, "cached SERVFAIL");
	if (r == CACHE_STALE)
		return wire_add_ede(out, len, max, q, WIRE_EDE_STALE, "stale answer");
	return len;
}

static void finish(fq_t *q, const uint8_t *resp, size_t len)
{
	fwd_t *f = q->f;
	if (!q->active)
		return;
	if (!resp)
		flight_end(q, NULL, 0);
	q->active = false;
	uv_timer_stop(&q->timer);
	uv_timer_stop(&q->ctimer);
	transport_stop(q);
	if (q->client_done) {
		/* the client has a stale answer, or there is none (prefetch) */
	} else if (resp) {
		MET_INC(f->stats.answered);
		q->done(q->arg, resp, len);
	} else {
		size_t n = 0;
		int r = CACHE_MISS;
		/* a SERVFAIL there is the one this failure just stored: no answer */
		if (f->conf->cache &&
		    (r = cache_lookup(f->conf->cache, q->msg, &q->wq, q->max, uv_now(f->loop), true,
		                      f->obuf, sizeof(f->obuf), &n)) != CACHE_MISS &&
		    (f->obuf[3] & 0x0f) != WIRE_SERVFAIL) {
			n = cached_ede(f->obuf, n, q->max, &q->wq, r);
			MET_INC(f->stats.stale);
		} else {
			/* 22, not 23 Network Error: a timeout, a refused connection and an
			 * upstream's SERVFAIL all end here, and which one is the log's to say */
			n = wire_error_response_ede(q->msg, q->len, WIRE_SERVFAIL,
			                            WIRE_EDE_NO_REACHABLE, "no upstream answered",
			                            f->obuf, sizeof(f->obuf));
			MET_INC(f->stats.servfail);
		}
		f->obuf[0] = (uint8_t)(q->wq.id >> 8), f->obuf[1] = (uint8_t)q->wq.id;
		q->done(q->arg, f->obuf, n);
	}
	release(q);
}

static bool matches(const fq_t *q, const uint8_t *r, size_t len)
{
	return wire_answers(&q->wq, q->up_id, r, len);
}

static void deliver(fq_t *q, const uint8_t *r, size_t len)
{
	fwd_t *f = q->f;
	fwd_up_stats_t *u = &f->stats.up[q->up];
	uint64_t ns = uv_hrtime() - q->sent_ns;
	MET_INC(u->rcode[met_rcode_index(r[3] & 0x0f)]);
	MET_INC(u->lat_bucket[met_lat_bucket(ns)]);
	MET_INC(u->lat_count);
	MET_ADD(u->lat_sum_ns, ns);
	f->answered_ms[q->up] = uv_now(f->loop);
	f->down_until[q->up] = 0;
	if (f->down_logged[q->up]) {
		f->down_logged[q->up] = false;
		log_info("event=upstream-up upstream=%s", f->conf->upstreams[q->up].text);
	}
	if (f->dt)
		tap_response(q, r, len);
	if (f->conf->cache && (r[3] & 0x0f) == WIRE_SERVFAIL) {
		/* with the cache an upstream's SERVFAIL is a failed try: the next upstream, and
		 * after the last a stale answer, or SERVFAIL kept for a few seconds */
		fail_try(q, false);
		return;
	}
	flight_end(q, r, len);
	finish(q, f->obuf, wire_relay(q->msg, &q->wq, r, len, q->max, f->obuf));
}

static void on_answer(fq_t *q, const uint8_t *r, size_t len)
{
	if (!matches(q, r, len)) {
		MET_INC(q->f->stats.mismatched);
		MET_INC(q->f->stats.up[q->up].mismatched);
		return;
	}
	if ((r[2] & 0x02) && !q->use_tcp) { /* truncated: the same try over TCP */
		if (q->f->dt)
			tap_response(q, r, len);
		MET_INC(q->f->stats.tcp_retries);
		MET_INC(q->f->stats.up[q->up].tcp_retries);
		q->use_tcp = true;
		udp_stop(q);
		tcp_send(q);
		return;
	}
	deliver(q, r, len);
}

/* ---- UDP ----------------------------------------------------------------------------------------
 */

static void on_udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	utry_t *u = h->data;
	(void)hint;
	*buf = uv_buf_init((char *)u->f->rbuf, sizeof(u->f->rbuf));
}

static void on_udp_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *addr,
                        unsigned flags)
{
	utry_t *u = h->data;
	fq_t *q = u->q;
	(void)flags;
	if (!q || !q->active || q->use_tcp)
		return; /* a late answer to a finished try */
	if (n < 0) {    /* ICMP unreachable on the connected socket */
		fail_try(q, true);
		return;
	}
	if (n == 0 || !addr)
		return;
	on_answer(q, (const uint8_t *)buf->base, (size_t)n);
}

static int udp_send(fq_t *q)
{
	fwd_t *f = q->f;
	const cfg_addr_t *up = &f->conf->upstreams[q->up];
	struct sockaddr_storage any = {.ss_family = up->ss.ss_family};
	utry_t *u = malloc(sizeof(*u));
	if (!u)
		return UV_ENOMEM;
	int rc = uv_udp_init(f->loop, &u->h);
	if (rc) {
		free(u);
		return rc;
	}
	u->h.data = u, u->q = q, u->f = f;
	q->udp = u;
	f->handles++;
	uv_buf_t b = uv_buf_init((char *)q->msg, (unsigned)q->len);
	if ((rc = uv_udp_bind(&u->h, (struct sockaddr *)&any, 0)) ||
	    (rc = uv_udp_connect(&u->h, (const struct sockaddr *)&up->ss)) ||
	    (rc = uv_udp_recv_start(&u->h, on_udp_alloc, on_udp_recv)))
		return rc;
	rc = uv_udp_try_send(&u->h, &b, 1, NULL);
	if (rc >= 0 && f->dt)
		tap_query(q, false, (const uv_handle_t *)&u->h);
	return rc < 0 ? rc : 0;
}

/* ---- TCP ----------------------------------------------------------------------------------------
 */

static void on_tconn_closed(uv_handle_t *h)
{
	tconn_t *tc = h->data;
	fwd_t *f = tc->f;
	if (--tc->handles == 0) {
		free(tc->buf);
		free(tc);
		f->handles--;
		maybe_free(f);
	}
}

/* Closes a connection; its queries fail their try (down: the upstream's fault). */
static void tconn_close(tconn_t *tc, bool down)
{
	fwd_t *f = tc->f;
	if (tc->closing)
		return;
	tc->closing = true;
	if (f->tconn[tc->up] == tc)
		f->tconn[tc->up] = NULL;
	while (tc->inflight) {
		fq_t *q = tc->inflight;
		tconn_detach(q);
		if (q->active)
			fail_try(q, down);
	}
	uv_close((uv_handle_t *)&tc->h, on_tconn_closed);
	uv_close((uv_handle_t *)&tc->idle, on_tconn_closed);
}

static void on_tconn_idle(uv_timer_t *t)
{
	tconn_t *tc = t->data;
	if (!tc->inflight)
		tconn_close(tc, false);
}

static void on_written(uv_write_t *req, int status)
{
	twrite_t *w = (twrite_t *)req;
	if (status < 0 && status != UV_ECANCELED)
		tconn_close(w->tc, true);
	free(w);
}

static void tcp_write(fq_t *q)
{
	tconn_t *tc = q->tc;
	twrite_t *w = malloc(sizeof(*w) + q->len + 2);
	if (!w) {
		tconn_close(tc, false);
		return;
	}
	w->tc = tc;
	w->data[0] = (uint8_t)(q->len >> 8), w->data[1] = (uint8_t)q->len;
	memcpy(w->data + 2, q->msg, q->len);
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)(q->len + 2));
	if (uv_write(&w->req, (uv_stream_t *)&tc->h, &b, 1, on_written)) {
		free(w);
		tconn_close(tc, true);
	} else if (tc->f->dt) {
		tap_query(q, true, (const uv_handle_t *)&tc->h);
	}
}

static void on_tconn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	tconn_t *tc = h->data;
	(void)hint;
	if (tc->cap - tc->len < 4096 && tc->cap < 65537 + 4096) {
		size_t cap = tc->cap ? tc->cap * 2 : 8192;
		uint8_t *b = realloc(tc->buf, cap);
		if (b)
			tc->buf = b, tc->cap = cap;
	}
	*buf = uv_buf_init((char *)tc->buf + tc->len, (unsigned)(tc->cap - tc->len));
}

static void on_tconn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	tconn_t *tc = s->data;
	(void)buf;
	if (n < 0) {
		tconn_close(tc, false);
		return;
	}
	tc->len += (size_t)n;
	size_t off = 0;
	while (tc->len - off >= 2) {
		size_t mlen = (size_t)tc->buf[off] << 8 | tc->buf[off + 1];
		if (tc->len - off - 2 < mlen)
			break;
		const uint8_t *m = tc->buf + off + 2;
		fq_t *q = tc->inflight;
		while (q && !matches(q, m, mlen))
			q = q->tnext;
		if (q) {
			tconn_detach(q);
			deliver(q, m, mlen);
		} else {
			MET_INC(tc->f->stats.mismatched);
			MET_INC(tc->f->stats.up[tc->up].mismatched);
		}
		off += 2 + mlen;
	}
	memmove(tc->buf, tc->buf + off, tc->len - off);
	tc->len -= off;
}

static void on_tconn_connect(uv_connect_t *req, int status)
{
	tconn_t *tc = req->data;
	if (tc->closing)
		return;
	if (status < 0) {
		tconn_close(tc, true);
		return;
	}
	tc->connected = true;
	uv_read_start((uv_stream_t *)&tc->h, on_tconn_alloc, on_tconn_read);
	for (fq_t *q = tc->inflight, *next; q; q = next) {
		next = q->tnext;
		tcp_write(q);
		if (tc->closing)
			break;
	}
}

static tconn_t *tconn_get(fwd_t *f, int up)
{
	if (f->tconn[up])
		return f->tconn[up];
	tconn_t *tc = calloc(1, sizeof(*tc));
	if (!tc)
		return NULL;
	tc->f = f, tc->up = up;
	uv_tcp_init(f->loop, &tc->h);
	uv_timer_init(f->loop, &tc->idle);
	tc->h.data = tc->idle.data = tc->creq.data = tc;
	tc->handles = 2;
	f->handles++;
	f->tconn[up] = tc;
	if (uv_tcp_connect(&tc->creq, &tc->h, (const struct sockaddr *)&f->conf->upstreams[up].ss,
	                   on_tconn_connect)) {
		tconn_close(tc, true);
		return NULL;
	}
	return tc;
}

static void tcp_send(fq_t *q)
{
	tconn_t *tc = tconn_get(q->f, q->up);
	if (!tc) {
		fail_try(q, true);
		return;
	}
	uv_timer_stop(&tc->idle);
	for (fq_t *o = tc->inflight; o;) { /* IDs are unique on a connection */
		if (o->up_id != q->up_id) {
			o = o->tnext;
			continue;
		}
		q->up_id = random_id(q->f);
		q->msg[0] = (uint8_t)(q->up_id >> 8), q->msg[1] = (uint8_t)q->up_id;
		o = tc->inflight; /* from the first again */
	}
	q->tc = tc;
	q->tnext = tc->inflight;
	if (tc->inflight)
		tc->inflight->tprev = q;
	tc->inflight = q;
	if (tc->connected)
		tcp_write(q);
}

/* ---- tries ------------------------------------------------------------------------------------
 */

/*
 * Whether a try that timed out says its upstream is down: not while the upstream answers
 * other questions (an answer came since this try went). One source's flood of names that
 * never come back says nothing about an upstream that answers everyone else, so it
 * cannot take forwarding away from them; an upstream that answers no one is down after
 * one timeout, as before (and probed again when no other is up).
 */
static bool timeout_is_evidence(const fq_t *q)
{
	return q->f->answered_ms[q->up] < q->sent_ms;
}

static void on_q_timer(uv_timer_t *t)
{
	fq_t *q = t->data;
	if (!q->active)
		return;
	if (q->retry_now) {
		q->retry_now = false;
	} else if (q->cut_short) { /* the budget ran out, not the upstream's time */
		transport_stop(q);
	} else { /* the try timed out */
		MET_INC(q->f->stats.up[q->up].timeouts);
		if (timeout_is_evidence(q))
			mark_down(q->f, q->up, "timeout");
		tconn_t *tc = q->tc;
		transport_stop(q);
		/* a connection a try timed out on may be dead (a silent upstream, a NAT that
		 * forgot it, a connect that hangs): the next tries get a new one */
		if (tc)
			tconn_close(tc, false);
	}
	start_try(q);
}

static void start_try(fq_t *q)
{
	fwd_t *f = q->f;
	int rc;
	uint64_t now = uv_now(f->loop);
	int n = (int)f->conf->n;
	if (now >= q->deadline || q->tries >= 2 * n) {
		finish(q, NULL, 0);
		return;
	}
	int pick = q->next_up % n;
	for (int k = 0; k < n; k++) { /* the next upstream not backing off, else probe anyway */
		int c = (q->next_up + k) % n;
		if (f->down_until[c] <= now) {
			pick = c;
			break;
		}
	}
	q->up = pick;
	q->next_up = pick + 1;
	q->tries++;
	q->use_tcp = q->client_tcp;
	q->up_id = random_id(f);
	q->msg[0] = (uint8_t)(q->up_id >> 8), q->msg[1] = (uint8_t)q->up_id;
	q->sent_ns = uv_hrtime();
	q->sent_ms = now;
	MET_INC(f->stats.up[pick].queries);
	uint64_t wait = f->conf->timeout_ms;
	q->cut_short = now + wait > q->deadline;
	if (q->cut_short)
		wait = q->deadline - now;
	uv_timer_start(&q->timer, on_q_timer, wait, 0);
	if (q->use_tcp) {
		tcp_send(q);
	} else if ((rc = udp_send(q))) {
		if (rc == UV_EMFILE || rc == UV_ENFILE) {
			MET_INC(f->stats.fd_exhausted);
			if (!f->fd_logged_ms || now - f->fd_logged_ms >= 10000) { /* once in 10 s */
				f->fd_logged_ms = now;
				log_warn("event=fd-exhausted where=upstream-socket reason=\"%s\" "
				         "hint=\"the open files limit: see internald(8) LIMITS\"",
				         uv_strerror(rc));
			}
		}
		fail_try(q, false);
	}
}

/* ---- the cache: waiting, stale answers ------------------------------------------------------- */

/* Answers handed over by owners (in this worker or another). */
static void on_wake(uv_async_t *a)
{
	fwd_t *f = a->data;
	pthread_mutex_lock(&f->mlock);
	fq_t *q = f->mail;
	f->mail = NULL;
	pthread_mutex_unlock(&f->mlock);
	while (q) {
		fq_t *next = q->mnext;
		fresult_t *r = q->result;
		q->result = NULL;
		q->waiting = false;
		if (r && r->len >= q->wq.question_end)
			finish(q, f->obuf,
			       wire_relay(q->msg, &q->wq, r->data, r->len, q->max, f->obuf));
		else
			finish(q, NULL, 0);
		result_put(r);
		q = next;
	}
}

/* A waiter's budget ran out before its owner's did. */
static void on_wait_timer(uv_timer_t *t)
{
	fq_t *q = t->data;
	if (q->active && q->waiting && cache_flight_leave(q->f->conf->cache, &q->cw))
		finish(q, NULL, 0);
	/* else it was handed over already: the mailbox finishes it */
}

/* The client response timer (RFC 8767): a stale answer if the cache has one; the query
 * goes on (an owner refreshes the entry in the background). */
static void on_client_timer(uv_timer_t *t)
{
	fq_t *q = t->data;
	fwd_t *f = q->f;
	size_t n = 0;
	int r;
	if (!q->active || q->client_done ||
	    (r = cache_lookup(f->conf->cache, q->msg, &q->wq, q->max, uv_now(f->loop), true,
	                      f->obuf, sizeof(f->obuf), &n)) == CACHE_MISS)
		return;
	f->obuf[0] = (uint8_t)(q->wq.id >> 8), f->obuf[1] = (uint8_t)q->wq.id;
	n = cached_ede(f->obuf, n, q->max, &q->wq, r);
	MET_INC(f->stats.stale);
	q->client_done = true;
	q->done(q->arg, f->obuf, n);
	if (q->waiting && cache_flight_leave(f->conf->cache, &q->cw)) {
		q->waiting = false;
		finish(q, NULL, 0);
	}
}

/* ---- interface ---------------------------------------------------------------------------------
 */

int fwd_create(fwd_t **out, uv_loop_t *loop, const fwd_conf_t *conf)
{
	if (conf->n == 0 || conf->n > CFG_UPSTREAM_MAX || conf->max_inflight == 0)
		return -EINVAL;
	fwd_t *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->pool = calloc(conf->max_inflight, sizeof(*f->pool));
	if (!f->pool || srcshare_create(&f->share) || srcshare_create(&f->org_share)) {
		srcshare_free(f->share);
		free(f->pool);
		free(f);
		return -ENOMEM;
	}
	f->org_share_max = conf->max_inflight / ORG_DIV;
	if (f->org_share_max < 2 * SHARE_MIN)
		f->org_share_max = 2 * SHARE_MIN;
	f->share_max = conf->max_inflight / SHARE_DIV;
	if (f->share_max < SHARE_MIN)
		f->share_max = SHARE_MIN;
	f->loop = loop, f->conf = conf;
	f->rnd_used = sizeof(f->rnd);
	pthread_mutex_init(&f->mlock, NULL);
	uv_async_init(loop, &f->wake, on_wake);
	f->wake.data = f;
	f->handles++;
	for (unsigned i = 0; i < conf->max_inflight; i++) {
		fq_t *q = &f->pool[i];
		q->f = f;
		uv_timer_init(loop, &q->timer);
		uv_timer_init(loop, &q->ctimer);
		q->timer.data = q->ctimer.data = q;
		q->cw.arg = q;
		f->handles += 2;
		q->next_free = f->free;
		f->free = q;
	}
	*out = f;
	return 0;
}

/*
 * Asks upstream for the client's query pkt (len bytes; wq its parse, copied). done NULL:
 * a prefetch, no client. Returns 0 (done will be called), or -ENOSPC when the in-flight
 * cap is reached / -EINVAL (nothing is asked).
 */
/*
 * The query as it goes upstream: the client's header and question as asked (letter case
 * kept: the answer's is checked against it), no other record: with EDNS an OPT of our
 * own, payload edns_size, the client's DO bit, version 0 and no option (a cookie,
 * padding, a client subnet are per hop). Returns its length (out: QUERY_MAX bytes).
 */
static size_t upstream_query(const uint8_t *pkt, const wire_query_t *wq, unsigned edns_size,
                             uint8_t *out)
{
	size_t n = wq->question_end;
	memcpy(out, pkt, n);
	out[4] = 0, out[5] = 1;   /* QDCOUNT */
	memset(out + 6, 0, 6);    /* AN, NS, AR */
	out[3] &= 0x30;           /* AD, CD kept; Z and RCODE 0 */
	out[2] &= (uint8_t)~0x06; /* no AA, TC in a query */
	if (wq->edns) {
		uint16_t size = (uint16_t)(edns_size ? edns_size : EDNS_SIZE);
		const uint8_t opt[11] = {0,
		                         0,
		                         WIRE_OPT,
		                         (uint8_t)(size >> 8),
		                         (uint8_t)size,
		                         0,
		                         0,
		                         wq->edns_do ? 0x80 : 0,
		                         0,
		                         0,
		                         0};
		memcpy(out + n, opt, sizeof(opt));
		n += sizeof(opt);
		out[11] = 1;
	}
	return n;
}

static int query_start(fwd_t *f, const uint8_t *pkt, size_t len, const wire_query_t *wq, size_t max,
                       bool tcp, fwd_done_fn done, void *arg)
{
	fq_t *q = f->free;
	if (f->closing || len > QUERY_MAX)
		return -EINVAL;
	if (!q) {
		MET_INC(f->stats.overload); /* a scrape reads it */
		return -ENOSPC;
	}
	/* a client's question counts against its source's share; a prefetch (no client)
	 * against none */
	uint32_t slot = done ? srcshare_slot(f->share, wq->source) : 0, org_slot = 0;
	if (done && !srcshare_take(f->share, slot, f->share_max)) {
		MET_INC(f->stats.over_share);
		return -EDQUOT;
	}
	/* and against its org's, so that many sources of one org cannot fill it either */
	bool in_org = done && wq->scope;
	if (in_org) {
		uint8_t prefix[16];
		org_prefix_of(wq->scope, prefix);
		org_slot = srcshare_slot(f->org_share, prefix);
		if (!srcshare_take(f->org_share, org_slot, f->org_share_max)) {
			srcshare_give(f->share, slot);
			MET_INC(f->stats.over_share);
			return -EDQUOT;
		}
	}
	q->slotted = done != NULL, q->slot = slot;
	q->org_slotted = in_org, q->org_slot = org_slot;
	q->wq = *wq;
	f->free = q->next_free;
	MET_INC(f->stats.inflight);
	MET_INC(f->stats.forwarded);
	q->active = true;
	q->retry_now = false;
	q->done = done, q->arg = arg;
	q->client_tcp = tcp;
	q->max = max;
	q->len = upstream_query(pkt, wq, f->conf->edns_size, q->msg);
	q->tries = 0;
	q->next_up = (int)(f->next_up++ % f->conf->n);
	q->deadline = uv_now(f->loop) + f->conf->budget_ms;
	q->timer.data = q->ctimer.data = q;
	q->client_done = done == NULL;
	q->waiting = q->owner = false;
	q->result = NULL;
	cache_t *c = f->conf->cache;
	if (c) {
		if (!cache_flight_join(c, &q->wq, &q->cw)) {
			if (!done) { /* a prefetch of a question in flight: nothing to do */
				if (!cache_flight_leave(c, &q->cw)) {
					q->waiting =
					        true; /* handed over already: on_wake ends it */
					return 0;
				}
				q->active = false;
				release(q);
				return 0;
			}
			q->waiting = true;
			MET_INC(f->stats.joined);
			uv_timer_start(&q->timer, on_wait_timer, f->conf->budget_ms, 0);
		} else {
			q->owner = true;
		}
		if (done && f->conf->client_timer_ms < f->conf->budget_ms)
			uv_timer_start(&q->ctimer, on_client_timer, f->conf->client_timer_ms, 0);
		if (q->waiting)
			return 0;
	}
	start_try(q);
	return 0;
}

/* Refreshes the cache's answer to pkt in the background: a query with no client, asked
 * only when no identical one is in flight. 0, or as query_start (nothing is asked). */
static int prefetch(fwd_t *f, const uint8_t *pkt, size_t len, const wire_query_t *wq)
{
	if (!wq->rd) /* nothing goes upstream for a question without RD, a refresh neither */
		return -EINVAL;
	int rc = query_start(f, pkt, len, wq, WIRE_TCP_MAX, false, NULL, NULL);
	if (rc == 0)
		MET_INC(f->stats.prefetches);
	return rc;
}

/* The cache's answer to pkt into out (its length), or 0: ask upstream. A hit in the last
 * tenth of its TTL also starts a refresh (retried later when the cap is reached). */
static size_t cache_answer(fwd_t *f, const uint8_t *pkt, size_t len, const wire_query_t *wq,
                           size_t max, uint8_t *out, size_t cap)
{
	cache_t *c = f->conf->cache;
	size_t n = 0;
	int r = cache_lookup(c, pkt, wq, max, uv_now(f->loop), false, out, cap, &n);
	if (r == CACHE_HIT_PREFETCH && prefetch(f, pkt, len, wq) == -ENOSPC)
		cache_prefetch_again(c, wq, uv_now(f->loop));
	return r == CACHE_MISS ? 0 : cached_ede(out, n, max, wq, r);
}

fwd_result_t fwd_resolve(fwd_t *f, const uint8_t *pkt, size_t len, const wire_query_t *q,
                         size_t max, bool tcp, uint8_t *out, size_t cap, size_t *outlen,
                         fwd_done_fn done, void *arg)
{
	if (f->conf->cache && (*outlen = cache_answer(f, pkt, len, q, max, out, cap)))
		return FWD_CACHED;
	if (!q->rd) { /* asks what is cached: it is not, and nothing goes upstream for it */
		MET_INC(f->stats.refused_norecurse);
		*outlen = wire_error_response(pkt, len, WIRE_REFUSED, out, cap);
		return FWD_REFUSED;
	}
	if (done && query_start(f, pkt, len, q, max, tcp, done, arg) == 0)
		return FWD_PENDING;
	*outlen = wire_error_response(pkt, len, WIRE_SERVFAIL, out, cap);
	return FWD_SERVFAIL;
}

const fwd_stats_t *fwd_stats(const fwd_t *f)
{
	return &f->stats;
}

void fwd_close(fwd_t *f)
{
	if (f->closing)
		return;
	f->closing = true;
	pthread_mutex_lock(&f->mlock); /* no owner hands anything over from now on */
	f->mclosed = true;
	for (fq_t *q = f->mail; q; q = q->mnext) {
		result_put(q->result);
		q->result = NULL;
	}
	f->mail = NULL;
	pthread_mutex_unlock(&f->mlock);
	for (unsigned i = 0; i < f->conf->max_inflight; i++) {
		fq_t *q = &f->pool[i];
		if (q->active) {
			q->active = false;
			transport_stop(q);
			if (q->waiting)
				cache_flight_leave(f->conf->cache, &q->cw);
			else if (q->owner) /* its waiters elsewhere: SERVFAIL or stale */
				q->owner = false,
				cache_flight_done(f->conf->cache, &q->cw, wake_waiter, NULL);
			if (!q->client_done)
				q->done(q->arg, NULL, 0);
		}
		q->timer.data = q->ctimer.data = f;
		uv_close((uv_handle_t *)&q->timer, on_handle_closed);
		uv_close((uv_handle_t *)&q->ctimer, on_handle_closed);
	}
	uv_close((uv_handle_t *)&f->wake, on_handle_closed);
	for (int i = 0; i < CFG_UPSTREAM_MAX; i++)
		if (f->tconn[i])
			tconn_close(f->tconn[i], false);
	maybe_free(f);
}

/* An upstream failed a try: skip it for the back-off, say so once per state change. */
static void mark_down(fwd_t *f, int up, const char *why)
{
	f->down_until[up] = uv_now(f->loop) + BACKOFF_MS;
	if (!f->down_logged[up]) {
		f->down_logged[up] = true;
		log_warn("event=upstream-down upstream=%s reason=%s backoff_ms=%d",
		         f->conf->upstreams[up].text, why, BACKOFF_MS);
	}
}

int fwd_set_conf(fwd_t *f, const fwd_conf_t *conf)
{
	if (f->closing || conf->max_inflight != f->conf->max_inflight || conf->n == 0)
		return -EINVAL;
	/* the counters are kept by position in the list: a position that now names another
	 * upstream starts from zero (a counter reset, as a scrape can tell), so that no
	 * upstream is labelled with another's numbers */
	for (unsigned i = 0; i < CFG_UPSTREAM_MAX; i++) {
		bool same = i < conf->n && i < f->conf->n &&
		            f->conf->upstreams[i].len == conf->upstreams[i].len &&
		            memcmp(&f->conf->upstreams[i].ss, &conf->upstreams[i].ss,
		                   conf->upstreams[i].len) == 0;
		if (same)
			continue;
		uint64_t *c = (uint64_t *)&f->stats.up[i];
		for (size_t k = 0; k < sizeof(f->stats.up[i]) / sizeof(*c); k++)
			__atomic_store_n(&c[k], 0, __ATOMIC_RELAXED);
	}
	f->conf = conf;
	for (int i = 0; i < CFG_UPSTREAM_MAX; i++) {
		if (f->tconn[i])
			tconn_close(f->tconn[i], false);
		f->down_until[i] = 0;
		f->down_logged[i] = false;
	}
	return 0;
}

void fwd_set_dnstap(fwd_t *f, dt_worker_t *dt)
{
	f->dt = dt;
}
