/*
 * fwd_upstream.c — the forwarder's side toward its upstreams (see forward.c for the whole):
 * a try over UDP from a fresh connected socket or over the worker's one pipelined TCP
 * connection to the upstream, the answer's checks (ID and question, TC to TCP), the try's
 * timer, and each upstream's up/down state and back-off.
 */
#include "fwd_impl.h"
#include "bytes.h"
#include "list.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "wire.h"

#define BACKOFF_MS  5000  /* how long a timed-out upstream is skipped */
#define TCP_IDLE_MS 10000 /* an upstream connection with nothing in flight closes */

static void tcp_send(fq_t *q);
static void on_q_timer(uv_timer_t *t);
static void on_tconn_idle(uv_timer_t *t);
static void mark_down(fwd_t *f, int up, const char *why);

static uint16_t random_id(fwd_t *f)
{
	if (f->rnd_used + 2 > sizeof(f->rnd)) {
		if (getrandom(f->rnd, sizeof(f->rnd), 0) != (ssize_t)sizeof(f->rnd))
			log_warn("event=getrandom status=failed reason=\"query IDs are weaker\"");
		f->rnd_used = 0;
	}
	uint16_t v = get_be16(f->rnd + f->rnd_used);
	f->rnd_used += 2;
	return v;
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
	fwd_maybe_free(f);
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
	LIST_UNLINK(&tc->inflight, q, tprev, tnext);
	q->tc = NULL;
	if (!tc->inflight && !tc->closing)
		uv_timer_start(&tc->idle, on_tconn_idle, TCP_IDLE_MS, 0);
}

void fwd_transport_stop(fq_t *q)
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
	fwd_transport_stop(q);
	q->retry_now = true;
	uv_timer_start(&q->timer, on_q_timer, 0, 0);
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
	fwd_flight_end(q, r, len);
	fwd_finish(q, f->obuf, wire_relay(q->msg, &q->wq, r, len, q->max, f->obuf));
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
		fwd_maybe_free(f);
	}
}

/* Closes a connection; its queries fail their try (down: the upstream's fault). */
void fwd_tconn_close(tconn_t *tc, bool down)
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
		fwd_tconn_close(tc, false);
}

static void on_written(uv_write_t *req, int status)
{
	twrite_t *w = (twrite_t *)req;
	if (status < 0 && status != UV_ECANCELED)
		fwd_tconn_close(w->tc, true);
	free(w);
}

static void tcp_write(fq_t *q)
{
	tconn_t *tc = q->tc;
	twrite_t *w = malloc(sizeof(*w) + q->len + 2);
	if (!w) {
		fwd_tconn_close(tc, false);
		return;
	}
	w->tc = tc;
	put_be16(w->data, (uint16_t)q->len);
	memcpy(w->data + 2, q->msg, q->len);
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)(q->len + 2));
	if (uv_write(&w->req, (uv_stream_t *)&tc->h, &b, 1, on_written)) {
		free(w);
		fwd_tconn_close(tc, true);
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
		fwd_tconn_close(tc, false);
		return;
	}
	tc->len += (size_t)n;
	size_t off = 0;
	while (tc->len - off >= 2) {
		size_t mlen = get_be16(tc->buf + off);
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
		fwd_tconn_close(tc, true);
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
		fwd_tconn_close(tc, true);
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
		put_be16(q->msg, q->up_id);
		o = tc->inflight; /* from the first again */
	}
	q->tc = tc;
	LIST_PUSH(&tc->inflight, q, tprev, tnext);
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
 *
 * The judgement waits for the loop's next poll: libuv runs due timers before it reads
 * the sockets, so after a stall (the process descheduled, stopped, swapped) a try's
 * timer fires while the upstream's answers to other questions sit unread. fwd_judge
 * runs in the check phase, right after the poll has read them.
 */
static void suspect(fq_t *q)
{
	fwd_t *f = q->f;
	if (f->answered_ms[q->up] >= q->sent_ms)
		return;
	if (f->suspect_ms[q->up] < q->sent_ms)
		f->suspect_ms[q->up] = q->sent_ms;
	if (!f->closing)
		uv_check_start(&f->judge, fwd_judge);
}

void fwd_judge(uv_check_t *h)
{
	fwd_t *f = h->data;
	uv_check_stop(h);
	for (unsigned up = 0; up < f->conf->n; up++) {
		if (f->suspect_ms[up] && f->answered_ms[up] < f->suspect_ms[up])
			mark_down(f, (int)up, "timeout");
		f->suspect_ms[up] = 0;
	}
}

static void on_q_timer(uv_timer_t *t)
{
	fq_t *q = t->data;
	if (!q->active)
		return;
	if (q->retry_now) {
		q->retry_now = false;
	} else if (q->cut_short) { /* the budget ran out, not the upstream's time */
		fwd_transport_stop(q);
	} else { /* the try timed out */
		MET_INC(q->f->stats.up[q->up].timeouts);
		suspect(q);
		tconn_t *tc = q->tc;
		fwd_transport_stop(q);
		/* a connection a try timed out on may be dead (a silent upstream, a NAT that
		 * forgot it, a connect that hangs): the next tries get a new one */
		if (tc)
			fwd_tconn_close(tc, false);
	}
	fwd_start_try(q);
}

void fwd_start_try(fq_t *q)
{
	fwd_t *f = q->f;
	int rc;
	uint64_t now = uv_now(f->loop);
	int n = (int)f->conf->n;
	if (now >= q->deadline || q->tries >= 2 * n) {
		fwd_finish(q, NULL, 0);
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
	put_be16(q->msg, q->up_id);
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
