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
 *
 * The tries toward upstreams (UDP, TCP, the up/down state) are fwd_upstream.c's; what
 * the two files share is src/fwd_impl.h.
 */
#include "fwd_impl.h"
#include "bytes.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "org.h"
#include "srcshare.h"
#include "wire.h"

#define EDNS_SIZE 1232 /* toward upstreams, unless the conf says otherwise */
#define SHARE_DIV 8    /* one source holds at most 1/8 of the pool (at least SHARE_MIN) */
#define SHARE_MIN 4
#define ORG_DIV   4 /* one org (all its sources) at most 1/4 (at least 2 * SHARE_MIN) */

/* ---- helpers ------------------------------------------------------------------------------ */

void fwd_maybe_free(fwd_t *f)
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
	fwd_maybe_free(f);
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
void fwd_flight_end(fq_t *q, const uint8_t *raw, size_t len)
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

void fwd_finish(fq_t *q, const uint8_t *resp, size_t len)
{
	fwd_t *f = q->f;
	if (!q->active)
		return;
	if (!resp)
		fwd_flight_end(q, NULL, 0);
	q->active = false;
	uv_timer_stop(&q->timer);
	uv_timer_stop(&q->ctimer);
	fwd_transport_stop(q);
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
		put_be16(f->obuf, q->wq.id);
		q->done(q->arg, f->obuf, n);
	}
	release(q);
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
			fwd_finish(q, f->obuf,
			           wire_relay(q->msg, &q->wq, r->data, r->len, q->max, f->obuf));
		else
			fwd_finish(q, NULL, 0);
		result_put(r);
		q = next;
	}
}

/* A waiter's budget ran out before its owner's did. */
static void on_wait_timer(uv_timer_t *t)
{
	fq_t *q = t->data;
	if (q->active && q->waiting && cache_flight_leave(q->f->conf->cache, &q->cw))
		fwd_finish(q, NULL, 0);
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
	put_be16(f->obuf, q->wq.id);
	n = cached_ede(f->obuf, n, q->max, &q->wq, r);
	MET_INC(f->stats.stale);
	q->client_done = true;
	q->done(q->arg, f->obuf, n);
	if (q->waiting && cache_flight_leave(f->conf->cache, &q->cw)) {
		q->waiting = false;
		fwd_finish(q, NULL, 0);
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
	uv_check_init(loop, &f->judge);
	f->judge.data = f;
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
	fwd_start_try(q);
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
			fwd_transport_stop(q);
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
	uv_close((uv_handle_t *)&f->judge, on_handle_closed);
	for (int i = 0; i < CFG_UPSTREAM_MAX; i++)
		if (f->tconn[i])
			fwd_tconn_close(f->tconn[i], false);
	fwd_maybe_free(f);
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
			fwd_tconn_close(f->tconn[i], false);
		f->down_until[i] = 0;
		f->down_logged[i] = false;
	}
	return 0;
}

void fwd_set_dnstap(fwd_t *f, dt_worker_t *dt)
{
	f->dt = dt;
}
