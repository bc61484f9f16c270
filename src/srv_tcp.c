/*
 * srv_tcp.c — the TCP path of a worker (RFC 7766): accept under the connection cap,
 * read frames, answer them in order, write with back-pressure (a client that does not
 * read stops being read), forward at most TCP_FWD_MAX queries per connection, close on
 * idle. A connection's buffer grows to one frame at most.
 *
 * One source cannot hold TCP for everyone: each source (srcshare.h: an address, a /64)
 * holds at most tcp_max_per_source connections of the process; a frame begun must be
 * whole within tcp_io_ms (a trickle of bytes no longer re-arms the idle timer); and when
 * the worker's table is full the connection quiet the longest (its last whole frame, or
 * its accept, the oldest) with nothing in flight is closed for the new client.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "srv_impl.h"
#include "bytes.h"

enum { CONN_OPEN, CONN_SLOW, CONN_SOURCE, CONN_EVICTED, CONN_CAP };

/* A whole frame waits in the buffer. */
static bool frame_whole(const conn_t *c)
{
	return c->len >= 2 && c->len - 2 >= get_be16(c->buf);
}

static void conn_release(conn_t *c)
{
	if (--c->refs > 0)
		return;
	worker_t *w = c->w;
	LIST_UNLINK(&w->conns, c, prev, next);
	w->nconns--;
	MET_ADD(w->m.tcp_open, (uint64_t)-1);
	if (c->slotted)
		srcshare_give(w->srv->tcp_src, c->slot);
	if (c->why == CONN_SLOW)
		MET_INC(w->m.tcp_closed_slow);
	else if (c->why == CONN_SOURCE)
		MET_INC(w->m.tcp_closed_source);
	else if (c->why == CONN_EVICTED)
		MET_INC(w->m.tcp_closed_evicted);
	else if (c->why == CONN_CAP)
		MET_INC(w->m.tcp_closed_cap);
	else if (c->idled)
		MET_INC(w->m.tcp_closed_idle);
	free(c->buf);
	free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
	conn_release(h->data);
}

void srv_conn_close(conn_t *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_close((uv_handle_t *)&c->h, on_conn_closed);
	uv_close((uv_handle_t *)&c->idle, on_conn_closed);
}

static void on_idle(uv_timer_t *t)
{
	conn_t *c = t->data;
	if (!c->closing && c->len && c->reading && !frame_whole(c))
		c->why = CONN_SLOW; /* a frame begun and not whole in time */
	c->idled = !c->closing;
	srv_conn_close(c);
}

/* After a read: quiet (nothing buffered), the idle timer from now; a frame begun (the
 * first bytes of one), the I/O deadline from now; a frame going on, no change: the bytes
 * of a trickle do not buy it time. */
static void conn_arm(conn_t *c, uint64_t frames_before)
{
	const config_t *cfg = &c->w->cfg_snap->cfg;
	uint64_t now = uv_now(&c->w->loop);
	if (c->frames != frames_before)
		c->quiet_ms = now;
	if (c->len == 0 || frame_whole(c)) {
		c->frame_ms = 0;
		uv_timer_start(&c->idle, on_idle, cfg->tcp_idle_ms, 0);
	} else if (c->frame_ms == 0 || c->frames != frames_before) {
		c->frame_ms = now;
		uv_timer_start(
		        &c->idle, on_idle,
		        cfg->tcp_io_ms < cfg->tcp_idle_ms ? cfg->tcp_io_ms : cfg->tcp_idle_ms, 0);
	}
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	conn_t *c = h->data;
	(void)hint;
	if (c->cap - c->len < 512 && c->cap < WIRE_TCP_MAX + 2) {
		size_t cap = c->cap * 2 > WIRE_TCP_MAX + 2 ? WIRE_TCP_MAX + 2 : c->cap * 2;
		uint8_t *b = realloc(c->buf, cap);
		if (b)
			c->buf = b, c->cap = cap;
	}
	*buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

typedef struct {
	uv_write_t req;
	conn_t *c;
	size_t len;
	uint8_t data[];
} wreq_t;

static void conn_read_start(conn_t *c);
static void conn_process(conn_t *c);

/* Room again (the client read, a forwarded answer came back): the frames that waited are
 * answered and reading goes on, unless the client has closed its side. */
static void conn_resume(conn_t *c)
{
	if (c->reading || c->closing || c->pending >= TCP_WRITE_HIGH / 2 || c->fwds >= TCP_FWD_MAX)
		return;
	conn_process(c);
	if (!c->closing && !c->eof && !c->reading && c->pending < TCP_WRITE_HIGH / 2 &&
	    c->fwds < TCP_FWD_MAX)
		conn_read_start(c);
}

/* After the client's EOF: closes once every answer is out and no whole frame waits. */
static void conn_finish_if_done(conn_t *c)
{
	if (!c->eof || c->closing || c->fwds || c->pending)
		return;
	if (c->len >= 2 && c->len - 2 >= get_be16(c->buf))
		return; /* a frame still to answer (conn_resume will) */
	srv_conn_close(c);
}

static void on_written(uv_write_t *req, int status)
{
	wreq_t *r = (wreq_t *)req;
	conn_t *c = r->c;
	c->pending -= r->len;
	if (status < 0)
		srv_conn_close(c);
	conn_resume(c);
	conn_finish_if_done(c);
	free(r);
	conn_release(c);
}

/* Writes one framed message (msg[-2..] has room for the length). */
static void conn_send(conn_t *c, uint8_t *framed, size_t len)
{
	if (c->closing)
		return;
	put_be16(framed, (uint16_t)len);
	size_t total = len + 2, done = 0;
	if (c->pending == 0) {
		uv_buf_t b = uv_buf_init((char *)framed, (unsigned)total);
		int n = uv_try_write((uv_stream_t *)&c->h, &b, 1);
		if (n > 0)
			done = (size_t)n;
		else if (n != UV_EAGAIN && n != UV_ENOSYS) {
			srv_conn_close(c);
			return;
		}
	}
	if (done == total)
		return;
	wreq_t *r = malloc(sizeof(*r) + total - done);
	if (!r) {
		srv_conn_close(c);
		return;
	}
	r->c = c, r->len = total - done;
	memcpy(r->data, framed + done, r->len);
	uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)r->len);
	if (uv_write(&r->req, (uv_stream_t *)&c->h, &b, 1, on_written)) {
		free(r);
		srv_conn_close(c);
		return;
	}
	c->refs++;
	c->pending += r->len;
	if (c->pending > TCP_WRITE_HIGH && c->reading) {
		uv_read_stop((uv_stream_t *)&c->h);
		c->reading = false;
	}
}

static void fwd_tcp_done(void *arg, const uint8_t *resp, size_t len)
{
	tcp_fwd_t *fq = arg;
	conn_t *c = fq->c;
	fq->used = false;
	c->fwds--;
	if (len)
		srv_count_relayed(c->w, true, resp, len);
	if (len && !c->closing) {
		uint8_t *out = c->w->tcp_out;
		memcpy(out + 2, resp, len);
		conn_send(c, out, len);
		if (c->w->dt) {
			dt_end_t cl, sv;
			srv_tap_ends(&cl, &sv, c->src, c->sport, c->dst, c->dport);
			dt_log_client_response(c->w->dt, true, &cl, &sv, &fq->qtime, resp, len);
		}
		conn_resume(c); /* len 0: the forwarder is closing, and so is the server */
		conn_finish_if_done(c);
	}
	conn_release(c);
}

static void conn_query(conn_t *c, const uint8_t *pkt, size_t len)
{
	worker_t *w = c->w;
	ans_client_t cl = {.tcp = true};
	memcpy(cl.src, c->src, 16);
	memcpy(cl.dst, c->dst, 16);
	size_t out = 0;
	srv_count_query(w, &cl);
	ans_action_t act = ans_process(&w->ans, &cl, pkt, len, w->tcp_out + 2, WIRE_TCP_MAX, &out);
	met_count_answer(&w->m, &w->ans, cl.tcp, act, pkt, len, w->tcp_out + 2, out);
	dt_end_t tc, ts;
	struct timespec now;
	if (w->dt && (act == ANS_REPLY || act == ANS_FORWARD)) {
		clock_gettime(CLOCK_REALTIME, &now);
		srv_tap_ends(&tc, &ts, c->src, c->sport, c->dst, c->dport);
		dt_log_client_query(w->dt, true, &tc, &ts, pkt, len, &now);
	}
	if (act == ANS_FORWARD) {
		tcp_fwd_t *fq = NULL; /* conn_process keeps fwds below TCP_FWD_MAX: one is free */
		for (size_t i = 0; i < TCP_FWD_MAX && !fq; i++)
			if (!c->fq[i].used)
				fq = &c->fq[i];
		if (fwd_resolve(w->fwd, pkt, len, &w->ans.q, WIRE_TCP_MAX, true, w->tcp_out + 2,
		                WIRE_TCP_MAX, &out, fq ? fwd_tcp_done : NULL, fq) == FWD_PENDING) {
			fq->c = c;
			if (w->dt)
				fq->qtime = now;
			fq->used = true;
			c->refs++;
			c->fwds++;
			return;
		}
		srv_count_relayed(w, true, w->tcp_out + 2, out); /* cached, or SERVFAIL */
	} else if (act != ANS_REPLY) {
		srv_conn_close(c); /* a message we would not answer on UDP ends a TCP session */
		return;
	}
	if (out)
		conn_send(c, w->tcp_out, out);
	if (out && w->dt)
		dt_log_client_response(w->dt, true, &tc, &ts, &now, w->tcp_out + 2, out);
}

/*
 * Answers the complete frames in the buffer while the client takes its answers: past the
 * high-water mark of unsent bytes, or with TCP_FWD_MAX of its queries forwarded and not
 * yet answered, the rest waits in the buffer (and reading stops) until the writes drain
 * or the answers come, so a client that pipelines and never reads holds at most the
 * buffer, the high-water mark and TCP_FWD_MAX answers, whatever the size of each.
 */
static void conn_process(conn_t *c)
{
	if (c->closing)
		return;
	if (!srv_batch_begin(c->w)) {
		srv_conn_close(c);
		return;
	}
	uint64_t t0 = clock_mono_ns(), sent = c->w->m.responses; /* the batch's time */
	size_t off = 0;
	while (!c->closing && c->pending <= TCP_WRITE_HIGH && c->fwds < TCP_FWD_MAX &&
	       c->len - off >= 2) {
		size_t mlen = get_be16(c->buf + off);
		if (mlen < WIRE_HDR) {
			srv_conn_close(c); /* zero or header-less frames: not DNS */
			break;
		}
		if (c->len - off - 2 < mlen)
			break;
		conn_query(c, c->buf + off + 2, mlen);
		off += 2 + mlen;
		c->frames++;
	}
	met_count_batch(&c->w->m, MET_TCP, c->w->m.responses - sent, clock_mono_ns() - t0);
	srv_batch_end(c->w);
	if (off) {
		memmove(c->buf, c->buf + off, c->len - off);
		c->len -= off;
	}
	if (c->fwds >= TCP_FWD_MAX && c->reading) { /* fwd_tcp_done resumes */
		uv_read_stop((uv_stream_t *)&c->h);
		c->reading = false;
	}
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
	conn_t *c = h->data;
	(void)buf;
	if (n == UV_EOF) { /* a half-close (RFC 7766 section 6.2.4): answer what came first */
		c->eof = true;
		c->reading = false; /* libuv stops reading at EOF */
		conn_finish_if_done(c);
		return;
	}
	if (n < 0) {
		srv_conn_close(c);
		return;
	}
	if (n == 0)
		return;
	c->len += (size_t)n;
	uint64_t frames = c->frames;
	conn_process(c);
	if (!c->closing)
		conn_arm(c, frames);
}

static void conn_read_start(conn_t *c)
{
	if (uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read) == 0)
		c->reading = true;
}

static void on_rejected_closed(uv_handle_t *h)
{
	free(h);
}

/* Accepts and closes at once, so the client knows (over the cap, out of memory). */
static void conn_reject(uv_stream_t *server, worker_t *w)
{
	uv_tcp_t *t = malloc(sizeof(*t));
	if (t && uv_tcp_init(&w->loop, t) == 0) {
		uv_accept(server, (uv_stream_t *)t);
		uv_close((uv_handle_t *)t, on_rejected_closed);
	} else {
		free(t);
	}
}

/* The table is full: the connection quiet the longest with nothing in flight (an idle
 * client, or one trickling a frame) is closed for a new one. Walks the table: only when
 * it is full. */
static bool conn_evict(worker_t *w, const conn_t *fresh)
{
	conn_t *victim = NULL;
	for (conn_t *c = w->conns; c; c = c->next)
		if (c != fresh && !c->closing && !c->fwds && !c->pending &&
		    (!victim || c->quiet_ms < victim->quiet_ms))
			victim = c;
	if (!victim)
		return false;
	victim->why = CONN_EVICTED;
	srv_conn_close(victim);
	return true;
}

void srv_tcp_accept(uv_stream_t *server, int status)
{
	tcp_listener_t *l = server->data;
	worker_t *w = l->w;
	if (status == UV_EMFILE || status == UV_ENFILE) { /* libuv closed the client for us */
		uint64_t now = uv_now(&w->loop);
		MET_INC(w->m.fd_exhausted);
		if (!w->fd_logged_ms || now - w->fd_logged_ms >= 10000) { /* once in 10 s */
			w->fd_logged_ms = now;
			log_warn("event=fd-exhausted worker=%u where=tcp-accept reason=\"%s\" "
			         "hint=\"the open files limit: see internald(8) LIMITS\"",
			         w->idx, uv_strerror(status));
		}
	}
	if (status < 0)
		return;
	bool full = w->nconns >= w->max_conns;
	conn_t *c = calloc(1, sizeof(*c));
	if (!c || !(c->buf = malloc(1024)) || uv_tcp_init(&w->loop, &c->h)) {
		if (c)
			free(c->buf);
		free(c);
		conn_reject(server, w); /* without uv_accept libuv would stop listening */
		return;
	}
	c->w = w, c->cap = 1024, c->refs = 2;
	c->h.data = c, c->idle.data = c;
	uv_timer_init(&w->loop, &c->idle);
	LIST_PUSH(&w->conns, c, prev, next);
	w->nconns++;
	MET_INC(w->m.tcp_accepted);
	MET_INC(w->m.tcp_open);
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	if (uv_accept(server, (uv_stream_t *)&c->h) ||
	    uv_tcp_getpeername(&c->h, (struct sockaddr *)&ss, &len)) {
		srv_conn_close(c);
		return;
	}
	srv_addr16(&ss, c->src);
	c->sport = srv_port_of(&ss);
	c->quiet_ms = uv_now(&w->loop);
	c->slot = srcshare_slot(w->srv->tcp_src, c->src);
	if (!(c->slotted = srcshare_take(w->srv->tcp_src, c->slot,
	                                 w->cfg_snap->cfg.tcp_max_per_source))) {
		c->why = CONN_SOURCE;
		srv_conn_close(c);
		return;
	}
	/* full: room is made only for a source under its cap, or one source at its cap
	 * could close the others' connections one by one */
	if (full && !conn_evict(w, c)) {
		c->why = CONN_CAP;
		srv_conn_close(c);
		return;
	}
	len = sizeof(ss);
	if (uv_tcp_getsockname(&c->h, (struct sockaddr *)&ss, &len) == 0)
		srv_addr16(&ss, c->dst), c->dport = srv_port_of(&ss);
	uv_timer_start(&c->idle, on_idle, w->cfg_snap->cfg.tcp_idle_ms, 0);
	conn_read_start(c);
}
