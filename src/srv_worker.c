/*
 * srv_worker.c — one worker: its loop and thread, its batch (the configuration it runs
 * with and the registry snapshot renewed per batch), its counters and heartbeat. The
 * transports (srv_udp.c, srv_tcp.c) call in here; it never reads or writes a socket.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "srv_impl.h"

static void worker_adopt(worker_t *w, const cfg_snap_t *sn);

/* ---- addresses ------------------------------------------------------------------------ */

void srv_addr16(const struct sockaddr_storage *ss, uint8_t out[16])
{
	memset(out, 0, 16);
	if (ss->ss_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	} else if (ss->ss_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	}
}

uint16_t srv_port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
	                                       : ((const struct sockaddr_in *)ss)->sin_port);
}

bool srv_is_wildcard(const struct sockaddr_storage *ss)
{
	static const uint8_t any6[16], any4[16] = {[10] = 0xff, [11] = 0xff};
	uint8_t a[16];
	srv_addr16(ss, a);
	return !memcmp(a, any6, 16) || !memcmp(a, any4, 16);
}

/* ---- the registry snapshot of a batch ---------------------------------------------------- */

/* The newest configuration, if this worker does not run with it yet. */
static void adopt_newest(worker_t *w)
{
	const cfg_snap_t *sn = __atomic_load_n(&w->srv->cfg_snap, __ATOMIC_ACQUIRE);
	if (sn != w->cfg_snap)
		worker_adopt(w, sn);
}

bool srv_batch_begin(worker_t *w)
{
	adopt_newest(w);
	int rc = reg_txn_renew(w->txn);
	if (rc) {
		if (!w->reg_failed) /* once per state change, not once per packet */
			log_error("event=registry-error worker=%u reason=\"cannot read the "
			          "registry: %s\"",
			          w->idx, reg_strerror(rc));
		w->reg_failed = true;
		return false;
	}
	if (w->reg_failed) {
		w->reg_failed = false;
		log_info("event=registry-reopened worker=%u", w->idx);
	}
	uint64_t txn_id = reg_txn_id(w->txn);
	if (txn_id == w->txn_id)
		return true; /* nothing was committed since the last batch */
	w->txn_id = txn_id;
	uint64_t gen = reg_generation(w->txn);
	/* never written, or a follower's that has not had its first full sync: answering from
	 * it would be REFUSED or NXDOMAIN for names that exist */
	reg_follow_t fo;
	bool follows = reg_get_follow(w->txn, &fo) == 0;
	w->ans.not_ready = gen == 0 || (follows && !fo.synced);
	if (w->ans.not_ready != w->waiting && w->idx == 0) {
		if (w->ans.not_ready)
			log_warn("event=registry-waiting reason=\"%s\" answer=SERVFAIL",
			         gen == 0 ? "the registry was never written"
			                  : "the follower has not finished its first sync");
		else
			log_info("event=registry-ready generation=%llu", (unsigned long long)gen);
	}
	w->waiting = w->ans.not_ready;
	if (gen != w->gen || gen == 0) {
		const char *slug = w->cfg_snap->cfg.default_org;
		w->gen = gen;
		w->ans.has_default = slug[0] && reg_org_net(w->txn, slug, strlen(slug),
		                                            &w->ans.default_net) == 0;
		if (slug[0] && !w->ans.has_default && !w->default_warned && w->idx == 0) {
			log_warn("event=default-org-missing org=%s generation=%llu", slug,
			         (unsigned long long)gen);
			w->default_warned = true;
		}
	}
	return true;
}

void srv_batch_end(worker_t *w)
{
	reg_txn_reset(w->txn);
}

/* ---- counters (metrics.h): a few stores into the worker's own struct, per query ---------- */

static bool is_v4mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = {[10] = 0xff, [11] = 0xff};
	return memcmp(a, prefix, 12) == 0;
}

void srv_count_query(worker_t *w, const ans_client_t *cl)
{
	MET_INC(w->m.queries[cl->tcp ? MET_TCP : MET_UDP]
	                    [is_v4mapped(cl->src) ? MET_IPV4 : MET_IPV6]);
}

/* A response relayed from upstream (or the SERVFAIL of a failed forward). */
void srv_count_relayed(worker_t *w, bool tcp, const uint8_t *resp, size_t len)
{
	if (len < WIRE_HDR)
		return;
	MET_INC(w->m.responses);
	MET_INC(w->m.rcode[met_rcode_index(resp[3] & 0x0f)]);
	if (!tcp && (resp[2] & 0x02))
		MET_INC(w->m.truncated);
}

/* ---- dnstap (include/dnstap.h): the client's and our end of a message ---------------------- */

void srv_tap_ends(dt_end_t *client, dt_end_t *server, const uint8_t src[16], uint16_t sport,
                  const uint8_t dst[16], uint16_t dport)
{
	memcpy(client->addr, src, 16), client->port = sport;
	memcpy(server->addr, dst, 16), server->port = dport;
}

/* ---- workers ------------------------------------------------------------------------------------
 */

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Closes the forwarder, every connection (with its own callbacks), then the rest. */
void srv_worker_close_all(worker_t *w)
{
	if (w->fwd) {
		uv_mutex_lock(&w->srv->scrape); /* a scrape may be reading its counters */
		w->fwd_last = *fwd_stats(w->fwd);
		w->fwds = &w->fwd_last;
		fwd_close(w->fwd);
		w->fwd = NULL;
		uv_mutex_unlock(&w->srv->scrape);
	}
	for (conn_t *c = w->conns; c; c = c->next)
		srv_conn_close(c);
	uv_walk(&w->loop, close_walk, NULL);
}

static void on_stop(uv_async_t *a)
{
	worker_t *w = a->data;
	if (w->m.wakeups)
		log_info("event=worker worker=%u datagrams=%llu per_recvmmsg=%.2f per_wakeup=%.2f",
		         w->idx, (unsigned long long)w->m.datagrams,
		         (double)w->m.datagrams / (double)w->m.recv_calls,
		         (double)w->m.datagrams / (double)w->m.wakeups);
	if (w->fwd) {
		const fwd_stats_t *st = fwd_stats(w->fwd);
		if (st->forwarded || w->m.forward_over_cap)
			log_info(
			        "event=worker worker=%u forwarded=%llu answered=%llu servfail=%llu "
			        "over_cap=%llu mismatched=%llu tcp_retries=%llu joined=%llu "
			        "prefetches=%llu",
			        w->idx, (unsigned long long)st->forwarded,
			        (unsigned long long)st->answered, (unsigned long long)st->servfail,
			        (unsigned long long)(st->overload + w->m.forward_over_cap),
			        (unsigned long long)st->mismatched,
			        (unsigned long long)st->tcp_retries, (unsigned long long)st->joined,
			        (unsigned long long)st->prefetches);
	}
	srv_worker_close_all(w);
}

static void on_beat(uv_timer_t *t)
{
	worker_t *w = t->data;
	__atomic_store_n(&w->m.heartbeat_ns, clock_mono_ns(), __ATOMIC_RELAXED);
	adopt_newest(w); /* an idle worker lets the previous configuration go too */
}

/* The test hook behind INTERNALD_TEST_HOOKS (internald(8)): a stuck event loop. */
static void on_stall(uv_async_t *a)
{
	worker_t *w = a->data;
	log_warn("event=test-stall worker=%u seconds=%d", w->idx, HOOK_STALL_S);
	sleep(HOOK_STALL_S);
}

void srv_worker_main(void *arg)
{
	worker_t *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

int srv_worker_init(srv_t *s, worker_t *w, int (*fds)[3], char *err)
{
	const config_t *cfg = s->cfg;
	int rc = uv_loop_init(&w->loop);
	if (rc) {
		snprintf(err, CFG_ERR_MAX, "uv_loop_init: %s", uv_strerror(rc));
		return -EIO;
	}
	w->srv = s;
	w->cfg_snap = s->cfg_snap;
	w->held = s->cfg_snap->seq;
	srv_udp_init(w);
	w->ans.conf = &s->cfg_snap->conf;
	if (getrandom(&w->ans.rng, sizeof(w->ans.rng), 0) != sizeof(w->ans.rng) || !w->ans.rng)
		w->ans.rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)w;
	w->ans.cand = calloc(ANS_NEAREST_MAX, sizeof(*w->ans.cand));
	if (!w->ans.cand)
		return -ENOMEM;
	if ((rc = reg_txn_begin(s->reg, false, &w->txn))) {
		snprintf(err, CFG_ERR_MAX, "registry: %s", reg_strerror(rc));
		return rc;
	}
	reg_txn_reset(w->txn);
	w->ans.txn = w->txn;
	w->max_conns = cfg->tcp_max_conns / s->nworkers ? cfg->tcp_max_conns / s->nworkers : 1;
	uv_async_init(&w->loop, &w->stop, on_stop);
	w->stop.data = w;
	w->m.heartbeat_ns = clock_mono_ns();
	uv_timer_init(&w->loop, &w->beat);
	w->beat.data = w;
	uv_timer_start(&w->beat, on_beat, BEAT_MS, BEAT_MS);
	if (s->hooks) {
		uv_async_init(&w->loop, &w->stall, on_stall);
		w->stall.data = w;
	}
	for (size_t i = 0; i < cfg->nlisten; i++) {
		udp_sock_t *u = &w->udp[i];
		u->w = w, u->fd = fds[i][0], u->sfd = fds[i][2],
		u->family = cfg->listen[i].ss.ss_family;
		srv_addr16(&cfg->listen[i].ss, u->local);
		u->wildcard = srv_is_wildcard(&cfg->listen[i].ss);
		struct sockaddr_storage bound;
		socklen_t blen = sizeof(bound);
		if (getsockname(u->fd, (struct sockaddr *)&bound, &blen) == 0)
			u->port = srv_port_of(&bound);
		uv_poll_init(&w->loop, &u->poll, u->fd);
		u->poll.data = u;
		uv_poll_start(&u->poll, UV_READABLE, srv_udp_readable);
		tcp_listener_t *t = &w->tcp[i];
		t->w = w;
		uv_tcp_init(&w->loop, &t->h);
		t->h.data = t;
		if ((rc = uv_tcp_open(&t->h, fds[i][1])) ||
		    (rc = uv_listen((uv_stream_t *)&t->h, 1024, srv_tcp_accept))) {
			snprintf(err, CFG_ERR_MAX, "listen on %s: %s", cfg->listen[i].text,
			         uv_strerror(rc));
			return -EIO;
		}
	}
	w->dt = dt_worker(s->dt, w->idx);
	if (s->conf->forward) {
		if ((rc = fwd_create(&w->fwd, &w->loop, &s->cfg_snap->fwd))) {
			snprintf(err, CFG_ERR_MAX, "forwarder: %s", strerror(-rc));
			return rc;
		}
		w->fwds = fwd_stats(w->fwd);
		fwd_set_dnstap(w->fwd, w->dt);
		w->fwd_pool = calloc(cfg->max_inflight, sizeof(*w->fwd_pool));
		if (!w->fwd_pool)
			return -ENOMEM;
		for (unsigned i = 0; i < cfg->max_inflight; i++) {
			w->fwd_pool[i].next = w->fwd_free;
			w->fwd_free = &w->fwd_pool[i];
		}
	}
	return 0;
}

/* On the worker's thread, at the start of a batch or a heartbeat: run with sn from now
 * on. Nothing of the previous configuration is read after held says sn. A forwarder that
 * refuses sn (srv_reload lets no such configuration through) keeps the worker on the
 * one it has, and held with it. */
static void worker_adopt(worker_t *w, const cfg_snap_t *sn)
{
	if (w->fwd && fwd_set_conf(w->fwd, &sn->fwd))
		return;
	w->cfg_snap = sn;
	w->ans.conf = &sn->conf;
	unsigned per = sn->cfg.tcp_max_conns / w->srv->nworkers;
	w->max_conns = per ? per : 1;
	w->gen = UINT64_MAX; /* resolve the default org again */
	w->txn_id = UINT64_MAX;
	__atomic_store_n(&w->held, sn->seq, __ATOMIC_RELEASE);
}

void srv_worker_free(worker_t *w)
{
	if (w->srv) {
		srv_worker_close_all(w);
		uv_run(&w->loop, UV_RUN_DEFAULT);
		uv_loop_close(&w->loop);
	}
	for (size_t j = 0; j < CFG_LISTEN_MAX && w->srv; j++)
		if (w->udp[j].w && w->udp[j].fd > 0) {
			if (w->udp[j].sfd != w->udp[j].fd)
				close(w->udp[j].sfd);
			close(w->udp[j].fd);
		}
	reg_txn_abort(w->txn);
	free(w->ans.cand);
	free(w->fwd_pool);
}
