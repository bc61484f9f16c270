/*
 * server.c — the server's lifecycle: bind every address, create the workers
 * (srv_worker.c), run them until a signal, reload on SIGHUP, and report metrics, health
 * and readiness. Boring on purpose: every decision about what to answer is answer.c's;
 * the server moves bytes (srv_udp.c, srv_tcp.c).
 *
 * Per worker: a uv_loop in its own thread; per listen address a SO_REUSEPORT UDP socket
 * (read with recvmmsg; answered with sendmmsg by a reply socket of the same address, or
 * on a wildcard by itself from the address the query came to via IPV6_PKTINFO/IP_PKTINFO)
 * and a SO_REUSEPORT TCP listener; one registry read
 * transaction renewed at the start of each batch and reset at its end. It must never
 * allocate per UDP query nor block the loop.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "srv_impl.h"

/* ---- addresses ------------------------------------------------------------------------ */

static const char *addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
	}
	return buf;
}

static int srv_dnstap_start(srv_t *s, char *err);

/* ---- bind ----------------------------------------------------------------------------------- */

enum { SOCK_QUERIES, SOCK_TCP, SOCK_REPLIES };

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/* A bound socket on a (port 0: *port, learned on the first bind): SOCK_QUERIES, a
 * worker's UDP socket of the address's SO_REUSEPORT group; SOCK_TCP its listener;
 * SOCK_REPLIES, see reply_socket. */
static int bind_socket(const cfg_addr_t *a, int kind, uint16_t *port, char *err)
{
	int type = kind == SOCK_TCP ? SOCK_STREAM : SOCK_DGRAM;
	int one = 1, fd = socket(a->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	char text[80];
	struct sockaddr_storage ss = a->ss;
	set_port(&ss, *port);
	if (fd < 0)
		goto fail;
	if ((kind != SOCK_REPLIES && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		goto fail;
	/* Only a wildcard bind needs PKTINFO (to learn and answer from the address asked):
	 * it costs a control message each way on every datagram. */
	bool pktinfo = kind == SOCK_QUERIES && srv_is_wildcard(&ss);
	if (ss.ss_family == AF_INET6) {
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) ||
		    (pktinfo && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))))
			goto fail;
	} else if (pktinfo && setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one))) {
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&ss, a->len))
		goto fail;
	if (*port == 0) {
		socklen_t len = sizeof(ss);
		getsockname(fd, (struct sockaddr *)&ss, &len);
		*port = srv_port_of(&ss);
	}
	return fd;
fail:;
	int e = errno;
	snprintf(err, CFG_ERR_MAX, "cannot bind %s (%s) %s: %s", a->text,
	         addr_text(&ss, text, sizeof(text)),
	         kind == SOCK_TCP       ? "tcp"
	         : kind == SOCK_QUERIES ? "udp"
	                                : "udp replies",
	         strerror(e));
	if (fd >= 0)
		close(fd);
	return -e;
}

/*
 * The UDP socket a worker's replies leave by: the same address and port as its query
 * socket (SO_REUSEADDR, outside the SO_REUSEPORT group), connected to itself, so no
 * query ever scores it (a connected socket matches only its peer). The socket epoll
 * watches is then never sent on: sending on it wakes its wait queue (epoll's entry) for
 * write space each time a reply is freed, about 3% of a cached answer's CPU. Made before
 * the query sockets, so no query can reach it in the moment between its bind and its
 * connect. *fd -1 when the connect fails (an address bound by ip_nonlocal_bind before
 * it is configured has no route yet): the query socket sends, as on a wildcard.
 */
static int reply_socket(const cfg_addr_t *a, uint16_t *port, int *fd, char *err)
{
	int rc = *fd = bind_socket(a, SOCK_REPLIES, port, err);
	if (rc < 0)
		return rc;
	struct sockaddr_storage ss = a->ss;
	set_port(&ss, *port);
	if (connect(*fd, (struct sockaddr *)&ss, a->len)) {
		char text[80];
		log_info("event=reply-socket addr=%s via=listening-socket reason=\"connect: %s\"",
		         addr_text(&ss, text, sizeof(text)), strerror(errno));
		close(*fd);
		*fd = -1;
	}
	return 0;
}

static void close_address(srv_t *s, int (*fds)[CFG_LISTEN_MAX][3], size_t i)
{
	for (unsigned w = 0; w < s->nworkers; w++)
		for (int k = 0; k < 3; k++)
			if (fds[w][i][k] >= 0 && (k != 2 || fds[w][i][2] != fds[w][i][0]))
				close(fds[w][i][k]);
}

/* Every worker's reply socket (see reply_socket; a wildcard answers from its query
 * socket: only that carries the address asked, by PKTINFO), UDP and TCP socket on one
 * address; with port 0 the kernel's pick for the first is used for every other socket
 * (retried if TCP has it taken). */
static int bind_address(srv_t *s, const cfg_addr_t *a, int (*fds)[CFG_LISTEN_MAX][3], size_t i,
                        char *err)
{
	uint16_t want = srv_port_of(&a->ss);
	bool wildcard = srv_is_wildcard(&a->ss);
	for (int attempt = 0; attempt < 16; attempt++) {
		uint16_t port = want;
		int rc = 0;
		for (unsigned w = 0; w < s->nworkers; w++)
			fds[w][i][0] = fds[w][i][1] = fds[w][i][2] = -1;
		for (unsigned w = 0; rc >= 0 && !wildcard && w < s->nworkers; w++)
			rc = reply_socket(a, &port, &fds[w][i][2], err);
		for (unsigned w = 0; rc >= 0 && w < s->nworkers; w++) {
			if ((rc = fds[w][i][0] = bind_socket(a, SOCK_QUERIES, &port, err)) >= 0)
				rc = fds[w][i][1] = bind_socket(a, SOCK_TCP, &port, err);
			if (fds[w][i][2] < 0)
				fds[w][i][2] = fds[w][i][0];
		}
		if (rc >= 0) {
			char text[80];
			struct sockaddr_storage ss = a->ss;
			set_port(&ss, port);
			/* the text before "(" is what every test suite parses: keep it */
			log_info("event=bind addr=%s proto=udp,tcp sockets=%u",
			         addr_text(&ss, text, sizeof(text)), s->nworkers);
			return 0;
		}
		close_address(s, fds, i);
		if (want != 0 || rc != -EADDRINUSE)
			return rc;
	}
	return -EADDRINUSE;
}

/* A configuration snapshot: copies of cfg and conf (conf's nsid and region pointing into
 * the copy); every snapshot's forwarders share the process's cache. */
static cfg_snap_t *cfg_snap_new(const config_t *cfg, const ans_conf_t *conf, cache_t *cache)
{
	cfg_snap_t *sn = calloc(1, sizeof(*sn));
	if (!sn)
		return NULL;
	sn->cfg = *cfg;
	sn->conf = *conf;
	sn->conf.nsid = conf->nsid ? sn->cfg.nsid : NULL;
	sn->conf.nsid_len = conf->nsid ? strlen(sn->cfg.nsid) : 0;
	sn->conf.region = sn->cfg.region; /* the server's region code, also into the copy */
	sn->fwd = (fwd_conf_t){
	        sn->cfg.upstream,           sn->cfg.nupstream,         sn->cfg.upstream_timeout_ms,
	        sn->cfg.upstream_budget_ms, sn->cfg.max_inflight,      cache,
	        sn->cfg.client_timer_ms,    sn->cfg.upstream_edns_size};
	return sn;
}

int srv_create(srv_t **out, const config_t *cfg, const ans_conf_t *conf, reg_t *reg, char *err)
{
	srv_t *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = cfg, s->conf = conf, s->reg = reg;
	s->nworkers = cfg->workers ? cfg->workers : (unsigned)get_nprocs();
	s->hooks = getenv("INTERNALD_TEST_HOOKS") != NULL;
	uv_mutex_init(&s->scrape);
	s->workers = calloc(s->nworkers, sizeof(*s->workers));
	int(*fds)[CFG_LISTEN_MAX][3] = calloc(s->nworkers, sizeof(*fds));
	int rc = -ENOMEM;
	if (!s->workers || !fds || srcshare_create(&s->tcp_src))
		goto fail;
	if (conf->forward && cfg->cache_size) {
		cache_conf_t cc = {cfg->cache_size, cfg->cache_max_ttl, cfg->cache_neg_max_ttl,
		                   cfg->serve_stale};
		if ((rc = cache_create(&s->cache, &cc))) {
			snprintf(err, CFG_ERR_MAX, "--cache-size %zu: %s", cfg->cache_size,
			         strerror(-rc));
			goto fail;
		}
	}
	if (!(s->cfg_snap = cfg_snap_new(cfg, conf, s->cache))) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < cfg->nlisten; i++)
		if ((rc = bind_address(s, &cfg->listen[i], fds, i, err)))
			goto fail;
	if (cfg->dnstap[0] && (rc = srv_dnstap_start(s, err)))
		goto fail;
	for (unsigned w = 0; w < s->nworkers; w++) {
		s->workers[w].idx = w;
		if ((rc = srv_worker_init(s, &s->workers[w], fds[w], err)))
			goto fail;
	}
	free(fds);
	*out = s;
	return 0;
fail:
	free(fds);
	if (rc == -ENOMEM && !err[0])
		snprintf(err, CFG_ERR_MAX, "out of memory");
	srv_free(s);
	return rc;
}

static void on_signal(uv_signal_t *h, int sig)
{
	srv_t *s = h->data;
	__atomic_store_n(&s->state, SRV_STOPPING, __ATOMIC_RELEASE);
	log_info("event=stopping signal=%s", sig == SIGINT ? "INT" : "TERM");
	if (s->hooks)
		usleep(1500 * 1000); /* test hook: a slow shutdown, so /ready can be seen 503 */
	for (unsigned i = 0; i < s->nworkers; i++)
		uv_async_send(&s->workers[i].stop);
	uv_close((uv_handle_t *)&s->sigint, NULL);
	uv_close((uv_handle_t *)&s->sigterm, NULL);
	uv_close((uv_handle_t *)&s->sighup, NULL);
	signal(SIGHUP, SIG_IGN); /* libuv put back the default, which would kill us mid-stop */
	if (s->hooks)
		uv_close((uv_handle_t *)&s->sigusr2, NULL);
}

static void on_sighup(uv_signal_t *h, int sig)
{
	srv_t *s = h->data;
	(void)sig;
	if (!s->reload) {
		log_warn("event=reload status=ignored reason=\"no configuration to reload\"");
		return;
	}
	if (s->reload(s, s->reload_arg) == 0)
		MET_INC(s->reloads);
	else
		MET_INC(s->reload_failures);
}

static void on_sigusr2(uv_signal_t *h, int sig)
{
	srv_t *s = h->data;
	(void)sig;
	uv_async_send(&s->workers[0].stall);
}

/* The exit log's totals: the same snapshot /metrics renders, so the two never differ. */
static void srv_log_totals(srv_t *s)
{
	met_snapshot_t m;
	srv_metrics(s, &m);
	const met_cache_t *c = &m.cache;
	if (c->present)
		log_info("event=cache hits=%llu servfail=%llu misses=%llu stale=%llu "
		         "prefetches=%llu "
		         "entries=%llu bytes=%llu evictions=%llu",
		         (unsigned long long)c->hits, (unsigned long long)c->servfail,
		         (unsigned long long)c->misses, (unsigned long long)c->stale,
		         (unsigned long long)c->prefetches, (unsigned long long)c->entries,
		         (unsigned long long)c->bytes, (unsigned long long)c->evictions);
}

int srv_run(srv_t *s)
{
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&s->main);
	uv_signal_init(&s->main, &s->sigint);
	uv_signal_init(&s->main, &s->sigterm);
	s->sigint.data = s->sigterm.data = s;
	uv_signal_start(&s->sigint, on_signal, SIGINT);
	uv_signal_start(&s->sigterm, on_signal, SIGTERM);
	uv_signal_init(&s->main, &s->sighup);
	s->sighup.data = s;
	uv_signal_start(&s->sighup, on_sighup, SIGHUP);
	if (s->hooks) {
		uv_signal_init(&s->main, &s->sigusr2);
		s->sigusr2.data = s;
		uv_signal_start(&s->sigusr2, on_sigusr2, SIGUSR2);
	}
	for (unsigned i = 0; i < s->nworkers; i++)
		uv_thread_create(&s->workers[i].thread, srv_worker_main, &s->workers[i]);
	__atomic_store_n(&s->state, SRV_READY, __ATOMIC_RELEASE);
	log_info("event=serving workers=%u listen=%zu", s->nworkers, s->cfg->nlisten);
	uv_run(&s->main, UV_RUN_DEFAULT);
	for (unsigned i = 0; i < s->nworkers; i++)
		uv_thread_join(&s->workers[i].thread);
	uv_loop_close(&s->main);
	srv_log_totals(s);
	return 0;
}

void srv_free(srv_t *s)
{
	if (!s)
		return;
	for (unsigned i = 0; s->workers && i < s->nworkers; i++)
		srv_worker_free(&s->workers[i]);
	free(s->workers);
	for (cfg_snap_t *sn = s->cfg_snap, *prev; sn; sn = prev) {
		prev = sn->prev;
		free(sn);
	}
	uv_mutex_destroy(&s->scrape);
	if (s->dt) {
		dt_stats_t st;
		dt_stats(s->dt, &st);
		log_info("event=dnstap frames=%llu dropped=%llu", (unsigned long long)st.sent,
		         (unsigned long long)st.dropped);
	}
	dt_free(s->dt); /* after the workers: they log until they stop */
	cache_free(s->cache);
	srcshare_free(s->tcp_src);
	free(s);
}

/* The dnstap writer (include/dnstap.h): identity is the NSID, else the hostname. */
static int srv_dnstap_start(srv_t *s, char *err)
{
	char host[256] = "";
	const char *identity = s->cfg->nsid[0] ? s->cfg->nsid : host;
	if (!s->cfg->nsid[0] && gethostname(host, sizeof(host) - 1))
		host[0] = '\0';
	int rc = dt_create(&s->dt, s->cfg->dnstap, s->nworkers, identity,
	                   "internald " INTERNALD_VERSION, err, CFG_ERR_MAX);
	if (rc == 0)
		log_info("event=dnstap status=started target=%s identity=%s", s->cfg->dnstap,
		         identity);
	return rc;
}

/* ---- reload, metrics, health (include/server.h) -----------------------------------------------
 */

/*
 * Frees the configurations no one can run with again: those older than the oldest a
 * worker has adopted. A worker only ever moves to the newest (adopt_newest), so one that
 * holds seq k never takes one below k; the newest is never freed. The scrape lock keeps
 * srv_metrics, which reads the newest under it, out while they go. Main thread.
 */
static void cfg_snap_reclaim(srv_t *s)
{
	uint64_t oldest = s->cfg_snap->seq;
	for (unsigned i = 0; i < s->nworkers; i++) {
		uint64_t h = __atomic_load_n(&s->workers[i].held, __ATOMIC_ACQUIRE);
		if (h < oldest)
			oldest = h;
	}
	uv_mutex_lock(&s->scrape);
	cfg_snap_t *keep = s->cfg_snap;
	while (keep->prev && keep->prev->seq >= oldest)
		keep = keep->prev;
	cfg_snap_t *dead = keep->prev;
	keep->prev = NULL;
	uv_mutex_unlock(&s->scrape);
	while (dead) {
		cfg_snap_t *p = dead->prev;
		free(dead);
		dead = p;
	}
}

void srv_on_reload(srv_t *s, int (*fn)(srv_t *s, void *arg), void *arg)
{
	s->reload = fn;
	s->reload_arg = arg;
}

int srv_reload(srv_t *s, const config_t *cfg, const ans_conf_t *conf, char *err)
{
	const cfg_snap_t *cur = s->cfg_snap;
	if (conf->forward != cur->conf.forward) {
		snprintf(err, CFG_ERR_MAX, "%s",
		         conf->forward ? "upstreams where there were none need a restart"
		                       : "removing every upstream needs a restart");
		return -EINVAL;
	}
	if (cfg->max_inflight != cur->cfg.max_inflight) {
		snprintf(err, CFG_ERR_MAX, "max-inflight needs a restart");
		return -EINVAL;
	}
	cfg_snap_t *sn = cfg_snap_new(cfg, conf, s->cache);
	if (!sn) {
		snprintf(err, CFG_ERR_MAX, "out of memory");
		return -ENOMEM;
	}
	sn->seq = s->cfg_snap->seq + 1;
	sn->prev = s->cfg_snap; /* a worker may still run with it until its next batch */
	__atomic_store_n(&s->cfg_snap, sn, __ATOMIC_RELEASE);
	cfg_snap_reclaim(s);
	return 0;
}

const config_t *srv_config(const srv_t *s)
{
	return &s->cfg_snap->cfg;
}

int srv_metrics(srv_t *s, met_snapshot_t *out)
{
	memset(out, 0, sizeof(*out));
	out->workers = s->nworkers;
	out->reloads = MET_LOAD(s->reloads);
	out->reload_failures = MET_LOAD(s->reload_failures);
	uv_mutex_lock(&s->scrape); /* also keeps cfg_snap_reclaim from freeing sn */
	const cfg_snap_t *sn = __atomic_load_n(&s->cfg_snap, __ATOMIC_ACQUIRE);
	out->nup = sn->cfg.nupstream;
	for (size_t i = 0; i < out->nup; i++)
		snprintf(out->up[i].addr, sizeof(out->up[i].addr), "%s", sn->cfg.upstream[i].text);
	for (unsigned i = 0; i < s->nworkers; i++) {
		worker_t *w = &s->workers[i];
		met_worker_add(&out->sum, &w->m);
		out->forward_over_cap += MET_LOAD(w->m.forward_over_cap);
		const fwd_stats_t *f = w->fwds;
		if (!f)
			continue;
		out->forward_inflight += MET_LOAD(f->inflight);
		out->forward_over_cap += MET_LOAD(f->overload);
		out->forward_over_share += MET_LOAD(f->over_share);
		out->forward_fd_exhausted += MET_LOAD(f->fd_exhausted);
		out->forward_refused_norecurse += MET_LOAD(f->refused_norecurse);
		for (size_t u = 0; u < out->nup; u++) {
			const fwd_up_stats_t *fu = &f->up[u];
			met_upstream_t *mu = &out->up[u];
			mu->queries += MET_LOAD(fu->queries);
			mu->timeouts += MET_LOAD(fu->timeouts);
			mu->mismatched += MET_LOAD(fu->mismatched);
			mu->tcp_retries += MET_LOAD(fu->tcp_retries);
			for (int k = 0; k <= MET_RCODES; k++)
				mu->rcode[k] += MET_LOAD(fu->rcode[k]);
			for (int k = 0; k <= MET_LAT_BUCKETS; k++)
				mu->lat_bucket[k] += MET_LOAD(fu->lat_bucket[k]);
			mu->lat_count += MET_LOAD(fu->lat_count);
			mu->lat_sum_ns += MET_LOAD(fu->lat_sum_ns);
		}
	}
	uv_mutex_unlock(&s->scrape);
	if (s->cache) {
		cache_stats_t cs;
		cache_stats(s->cache, &cs);
		out->cache = (met_cache_t){true,       cs.hits,       cs.servfail, cs.misses,
		                           cs.stale,   cs.prefetches, cs.inserts,  cs.evictions,
		                           cs.entries, cs.bytes};
	}
	if (s->dt) {
		dt_stats_t ds;
		dt_stats(s->dt, &ds);
		out->dnstap.present = true;
		out->dnstap.sent = ds.sent, out->dnstap.dropped = ds.dropped;
	}
	reg_txn_t *t;
	if (reg_txn_begin(s->reg, false, &t) == 0) {
		reg_follow_t fo;
		out->reg.present = true;
		out->reg.generation = reg_generation(t);
		out->reg.written_ns = reg_written_ns(t);
		if (reg_get_follow(t, &fo) == 0) {
			out->reg.follows = true;
			out->reg.follow_seq = fo.seq;
			out->reg.follow_applied_ns = fo.applied_ns;
			out->reg.follow_head = fo.head > fo.seq ? fo.head : fo.seq;
			out->reg.follow_contact_ns = fo.contact_ns;
			out->reg.follow_synced = fo.synced;
		}
		reg_txn_abort(t);
	}
	return 0;
}

int srv_health(const srv_t *s, char *msg, size_t cap)
{
	uint64_t now = clock_mono_ns();
	size_t o = 0;
	int stalled = 0;
	if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == SRV_STOPPING) {
		snprintf(msg, cap, "stopping\n");
		return 503;
	}
	for (unsigned i = 0; i < s->nworkers; i++) {
		uint64_t beat = MET_LOAD(s->workers[i].m.heartbeat_ns);
		if (now > beat && now - beat > (uint64_t)STALL_MS * 1000000u) {
			stalled++;
			if (o < cap)
				o += (size_t)snprintf(
				        msg + o, cap - o,
				        "worker %u stalled: its loop last turned %.1f s ago\n", i,
				        (double)(now - beat) / 1e9);
		}
	}
	if (stalled)
		return 503;
	snprintf(msg, cap, "ok: %u workers turned within %d ms\n", s->nworkers, STALL_MS);
	return 200;
}

int srv_ready(const srv_t *s, char *msg, size_t cap)
{
	int st = s ? __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) : SRV_STARTING;
	reg_txn_t *t;
	if (st == SRV_READY && reg_txn_begin(s->reg, false, &t) == 0) {
		/* a follower writes this registry: not ready before its first full sync */
		reg_follow_t fo;
		bool waiting = reg_get_follow(t, &fo) == 0 && !fo.synced;
		reg_txn_abort(t);
		if (waiting) {
			snprintf(msg, cap,
			         "waiting for the first sync of the registry from bucket %s\n",
			         fo.bucket);
			return 503;
		}
	}
	snprintf(msg, cap, "%s\n",
	         st == SRV_READY      ? "ready"
	         : st == SRV_STOPPING ? "stopping"
	                              : "starting");
	return st == SRV_READY ? 200 : 503;
}
