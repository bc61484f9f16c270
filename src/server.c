/*
 * server.c — sockets, workers and batching. Boring on purpose: every decision about
 * what to answer is answer.c's; this file moves bytes.
 *
 * Per worker: a uv_loop in its own thread; per listen address a SO_REUSEPORT UDP socket
 * (read with recvmmsg; answered with sendmmsg by a reply socket of the same address, or
 * on a wildcard by itself from the address the query came to via IPV6_PKTINFO/IP_PKTINFO)
 * and a SO_REUSEPORT TCP listener; one registry read
 * transaction renewed at the start of each batch and reset at its end. It must never
 * allocate per UDP query nor block the loop.
 */
#include "server.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "dnstap.h"
#include "cache.h"
#include "forward.h"
#include "log.h"
#include "metrics.h"
#include "wire.h"

#define BATCH          32
#define RBUF           4096           /* a query larger than this is not a query */
#define WBUF           WIRE_EDNS_SIZE /* the largest UDP answer we send */
#define CMSG_ROOM      CMSG_SPACE(sizeof(struct in6_pktinfo))
#define TCP_WRITE_HIGH (256 * 1024) /* stop reading a client that does not read */
#define TCP_FWD_MAX    16           /* forwarded queries in flight per TCP connection */
#define ROUNDS         8            /* recvmmsg rounds per readable event */
#define BEAT_MS        1000         /* a worker's heartbeat (the watchdog's /health) */
#define STALL_MS       3000         /* a heartbeat older than this: the worker is stalled */
#define HOOK_STALL_S   6            /* INTERNALD_TEST_HOOKS: SIGUSR2 stalls worker 0 so long */

/* One configuration the workers run with: immutable once published (SIGHUP publishes
 * a new one; a worker adopts it at the start of its next batch, or at its next heartbeat
 * when idle). Freed by a later reload once every worker has adopted a newer one
 * (snap_reclaim), or with the server. */
typedef struct snap {
	config_t cfg;
	ans_conf_t conf;
	fwd_conf_t fwd;
	uint64_t seq; /* 0 for the first; each reload's is one more */
	struct snap *prev;
} snap_t;

typedef struct worker worker_t;

typedef struct {
	worker_t *w;
	int fd, family;
	int sfd;           /* the socket replies leave by (bind_address): fd if wildcard */
	bool wildcard;     /* bound to :: or 0.0.0.0: PKTINFO tells and sets the address */
	uint8_t local[16]; /* the bound address otherwise */
	uv_poll_t poll;
	uint16_t port; /* the bound port, for dnstap */
} udp_sock_t;

typedef struct {
	worker_t *w;
	uv_tcp_t h;
} tcp_listener_t;

typedef struct conn conn_t;

/* One of a connection's forwarded queries: the forwarder's callback argument. */
typedef struct {
	conn_t *c;
	struct timespec qtime; /* when the query came, for dnstap */
	bool used;
} tcp_fwd_t;

struct conn {
	worker_t *w;
	uv_tcp_t h;
	uv_timer_t idle;
	uint8_t *buf;
	size_t len, cap;
	size_t pending; /* bytes written but not yet flushed */
	int refs;       /* handles not yet closed + forwarded queries in flight */
	unsigned fwds;  /* forwarded queries in flight (at most TCP_FWD_MAX) */
	bool closing, reading;
	bool eof; /* the client closed its side: answer what it sent, then close */
	uint8_t src[16], dst[16];
	struct conn *prev, *next;
	bool idled;                /* closed by the idle timer (metrics) */
	uint16_t sport, dport;     /* for dnstap */
	tcp_fwd_t fq[TCP_FWD_MAX]; /* its forwarded queries in flight (fwds of them used) */
};

/* A UDP query waiting for its upstream answer. */
typedef struct fwd_udp {
	udp_sock_t *sock;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	uint8_t dst[16];
	unsigned ifindex;
	struct fwd_udp *next;
	struct timespec qtime; /* when the query came, for dnstap */
} fwd_udp_t;

struct worker {
	srv_t *srv;
	unsigned idx;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t stop;
	udp_sock_t udp[CFG_LISTEN_MAX];
	tcp_listener_t tcp[CFG_LISTEN_MAX];
	int tcp_fd[CFG_LISTEN_MAX];
	reg_txn_t *txn;
	ans_ctx_t ans;
	uint64_t gen, snapshot;
	bool default_warned;
	fwd_t *fwd;
	fwd_udp_t *fwd_pool, *fwd_free;
	conn_t *conns;
	unsigned nconns, max_conns;
	/* UDP batch buffers */
	struct mmsghdr in[BATCH], out[BATCH];
	struct iovec iov_in[BATCH], iov_out[BATCH];
	struct sockaddr_storage from[BATCH];
	uint8_t cmsg_in[BATCH][CMSG_ROOM], cmsg_out[BATCH][CMSG_ROOM];
	uint8_t rbuf[BATCH][RBUF], wbuf[BATCH][WBUF];
	uint8_t tcp_out[WIRE_TCP_MAX + 2];
	met_worker_t m;          /* this worker's counters: only it writes them */
	const snap_t *snap;      /* the configuration this worker runs with */
	uint64_t held;           /* snap->seq, published (atomic) once adopted: snap_reclaim */
	uv_timer_t beat;         /* stamps m.heartbeat_ns */
	uv_async_t stall;        /* test hook */
	const fwd_stats_t *fwds; /* the forwarder's counters, or fwd_last once it closed */
	fwd_stats_t fwd_last;
	bool reg_failed; /* the last renew failed: logged once */
	dt_worker_t *dt; /* NULL: no dnstap */
};

struct srv {
	const config_t *cfg;
	const ans_conf_t *conf;
	reg_t *reg;
	unsigned nworkers;
	worker_t *workers;
	uv_loop_t main;
	uv_signal_t sigint, sigterm;
	snap_t *snap; /* the newest configuration (workers load it, acquire) */
	int state;    /* SRV_STARTING, SRV_READY, SRV_STOPPING (atomic) */
	bool hooks;   /* INTERNALD_TEST_HOOKS is set */
	uv_signal_t sighup, sigusr2;
	int (*reload)(srv_t *s, void *arg);
	void *reload_arg;
	uint64_t reloads, reload_failures;
	uv_mutex_t scrape; /* a scrape against a worker closing its forwarder */
	dt_t *dt;          /* NULL: no dnstap */
	cache_t *cache;    /* forwarded answers, shared by the workers; NULL: none */
};

enum { SRV_STARTING, SRV_READY, SRV_STOPPING };

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void worker_adopt(worker_t *w, const snap_t *sn);

/* ---- addresses ------------------------------------------------------------------------ */

/* Any socket address as 16 bytes of IPv6 (IPv4 as v4-mapped). */
static void addr16(const struct sockaddr_storage *ss, uint8_t out[16])
{
	memset(out, 0, 16);
	if (ss->ss_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	} else if (ss->ss_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	}
}

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

/* ---- the registry snapshot of a batch ---------------------------------------------------- */

/* The newest configuration, if this worker does not run with it yet. */
static void adopt_newest(worker_t *w)
{
	const snap_t *sn = __atomic_load_n(&w->srv->snap, __ATOMIC_ACQUIRE);
	if (sn != w->snap)
		worker_adopt(w, sn);
}

static bool batch_begin(worker_t *w)
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
	uint64_t snapshot = reg_txn_id(w->txn);
	if (snapshot == w->snapshot)
		return true; /* nothing was committed since the last batch */
	w->snapshot = snapshot;
	uint64_t gen = reg_generation(w->txn);
	if (gen != w->gen || gen == 0) {
		const char *slug = w->snap->cfg.default_org;
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

static void batch_end(worker_t *w)
{
	reg_txn_reset(w->txn);
}

/* ---- counters (metrics.h): a few stores into the worker's own struct, per query ---------- */

static const uint8_t form_index[] = {
        [NAME_NX] = MET_FORM_OTHER,
        [NAME_APEX] = MET_FORM_APEX,
        [NAME_ENT] = MET_FORM_OTHER,
        [NAME_APP] = MET_FORM_APP,
        [NAME_REGION] = MET_FORM_REGION,
        [NAME_GROUP] = MET_FORM_GROUP,
        [NAME_VM] = MET_FORM_VM,
        [NAME_NEAREST] = MET_FORM_NEAREST,
        [NAME_META] = MET_FORM_METADATA,
        [NAME_VMS] = MET_FORM_VMS,
        [NAME_REGIONS] = MET_FORM_REGIONS,
        [NAME_APPS] = MET_FORM_APPS,
        [NAME_PEERS] = MET_FORM_PEERS,
        [NAME_PEER] = MET_FORM_PEER,
        [NAME_INSTANCES] = MET_FORM_INSTANCES,
        [NAME_FLYCAST] = MET_FORM_FLYCAST,
        [NAME_PTR] = MET_FORM_PTR,
};

static bool is_v4mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = {[10] = 0xff, [11] = 0xff};
	return memcmp(a, prefix, 12) == 0;
}

static void count_query(worker_t *w, const ans_client_t *cl)
{
	MET_INC(w->m.queries[cl->tcp ? MET_TCP : MET_UDP]
	                    [is_v4mapped(cl->src) ? MET_IPV4 : MET_IPV6]);
}

/* What ans_process decided (its last_* fields) into the counters. */
static void count_answer(worker_t *w, const ans_client_t *cl, ans_action_t act, const uint8_t *pkt,
                         size_t len, const uint8_t *out, size_t outlen)
{
	const ans_ctx_t *a = &w->ans;
	if (act == ANS_DROP) {
		MET_INC(w->m.dropped[len < WIRE_HDR         ? MET_DROP_SHORT
		                     : (pkt[2] & 0x80) != 0 ? MET_DROP_QR
		                                            : MET_DROP_UNPARSEABLE]);
		return;
	}
	if (act != ANS_REPLY || !outlen)
		return;
	MET_INC(w->m.rcode[met_rcode_index(a->last_rcode < 0 ? MET_RCODES
	                                                     : (unsigned)a->last_rcode)]);
	if (a->last_form > NAME_OUTSIDE && (size_t)a->last_form < sizeof(form_index))
		MET_INC(w->m.form[form_index[a->last_form]]);
	if (!cl->tcp && (out[2] & 0x02))
		MET_INC(w->m.truncated);
	if (a->last_refused < 0)
		return;
	int why = MET_REFUSED_NO_UPSTREAM;
	switch (a->last_refused) {
	case ANS_REFUSED_ORG: /* the one verdict covers two reasons: the allow list tells */
		why = MET_REFUSED_NOT_ALLOWED;
		for (size_t i = 0; i < a->conf->acl.nallow; i++)
			if (org_prefix_contains(&a->conf->acl.allow[i], cl->src))
				why = MET_REFUSED_OTHER_ORG;
		break;
	case ANS_REFUSED_CLASS:
		why = MET_REFUSED_CLASS;
		break;
	case ANS_REFUSED_TRANSFER:
		why = MET_REFUSED_TRANSFER;
		break;
	case ANS_REFUSED_NO_ORG:
		why = MET_REFUSED_NO_ORG;
		break;
	}
	MET_INC(w->m.refused[why]);
}

/* A response relayed from upstream (or the SERVFAIL of a failed forward). */
static void count_relayed(worker_t *w, bool tcp, const uint8_t *resp, size_t len)
{
	if (len < WIRE_HDR)
		return;
	MET_INC(w->m.rcode[met_rcode_index(resp[3] & 0x0f)]);
	if (!tcp && (resp[2] & 0x02))
		MET_INC(w->m.truncated);
}

/* ---- dnstap (include/dnstap.h): the client's and our end of a message ---------------------- */

static void tap_ends(dt_end_t *client, dt_end_t *server, const uint8_t src[16], uint16_t sport,
                     const uint8_t dst[16], uint16_t dport)
{
	memcpy(client->addr, src, 16), client->port = sport;
	memcpy(server->addr, dst, 16), server->port = dport;
}

static int srv_dnstap_start(srv_t *s, char *err);

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
	                                       : ((const struct sockaddr_in *)ss)->sin_port);
}

/* ---- UDP ------------------------------------------------------------------------------------ */

static bool is_wildcard(const struct sockaddr_storage *ss)
{
	static const uint8_t any6[16], any4[16] = {[10] = 0xff, [11] = 0xff};
	uint8_t a[16];
	addr16(ss, a);
	return !memcmp(a, any6, 16) || !memcmp(a, any4, 16);
}

/* The destination of a received datagram, from its PKTINFO. */
static void pktinfo_in(const struct msghdr *mh, uint8_t dst[16], unsigned *ifindex)
{
	memset(dst, 0, 16);
	*ifindex = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
		if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			memcpy(dst, &pi.ipi6_addr, 16);
			*ifindex = pi.ipi6_ifindex;
		} else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			dst[10] = dst[11] = 0xff;
			memcpy(dst + 12, &pi.ipi_addr, 4);
			*ifindex = (unsigned)pi.ipi_ifindex;
		}
	}
}

/* Sets the source of a reply to dst (the query's destination). Returns the control
 * length written into room. */
static size_t pktinfo_out(int family, uint8_t *room, const uint8_t dst[16], unsigned ifindex)
{
	struct msghdr mh = {.msg_control = room, .msg_controllen = CMSG_ROOM};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	memset(room, 0, CMSG_ROOM);
	if (family == AF_INET6) {
		struct in6_pktinfo pi = {.ipi6_ifindex = ifindex};
		memcpy(&pi.ipi6_addr, dst, 16);
		c->cmsg_level = IPPROTO_IPV6, c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		return CMSG_SPACE(sizeof(pi));
	}
	struct in_pktinfo pi = {.ipi_ifindex = (int)ifindex};
	memcpy(&pi.ipi_spec_dst, dst + 12, 4);
	c->cmsg_level = IPPROTO_IP, c->cmsg_type = IP_PKTINFO;
	c->cmsg_len = CMSG_LEN(sizeof(pi));
	memcpy(CMSG_DATA(c), &pi, sizeof(pi));
	return CMSG_SPACE(sizeof(pi));
}

static void udp_send_one(udp_sock_t *s, const struct sockaddr_storage *peer, socklen_t peer_len,
                         const uint8_t dst[16], unsigned ifindex, const uint8_t *msg, size_t len)
{
	uint8_t room[CMSG_ROOM];
	struct iovec iov = {(void *)msg, len};
	struct msghdr mh = {
	        .msg_name = (void *)peer,
	        .msg_namelen = peer_len,
	        .msg_iov = &iov,
	        .msg_iovlen = 1,
	        .msg_control = room,
	};
	if (s->wildcard)
		mh.msg_controllen = pktinfo_out(s->family, room, dst, ifindex);
	else
		mh.msg_control = NULL;
	if (sendmsg(s->sfd, &mh, MSG_DONTWAIT) < 0)
		log_debug("udp send: %s", strerror(errno));
}

static void fwd_udp_done(void *arg, const uint8_t *resp, size_t len)
{
	fwd_udp_t *u = arg;
	worker_t *w = u->sock->w;
	if (len) {
		count_relayed(w, false, resp, len);
		udp_send_one(u->sock, &u->peer, u->peer_len, u->dst, u->ifindex, resp, len);
	}
	if (len && w->dt) {
		dt_end_t cl, sv;
		dt_end_from_sockaddr(&cl, (const struct sockaddr *)&u->peer);
		tap_ends(&cl, &sv, cl.addr, cl.port, u->dst, u->sock->port);
		dt_log_client_response(w->dt, false, &cl, &sv, &u->qtime, resp, len);
	}
	u->next = w->fwd_free;
	w->fwd_free = u;
}

/* The answer from the shared cache into out (its length), or 0: ask upstream. A hit in
 * the last tenth of its TTL also starts a background refresh. Never allocates. */
static size_t cache_answer(worker_t *w, const uint8_t *pkt, size_t len, const wire_query_t *q,
                           size_t max, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int r = cache_lookup(w->srv->cache, pkt, q, max, uv_now(&w->loop), false, out, cap, &n);
	if (r == CACHE_HIT_PREFETCH && fwd_prefetch(w->fwd, pkt, len) == -ENOSPC)
		cache_prefetch_again(w->srv->cache, q, uv_now(&w->loop));
	return r == CACHE_MISS ? 0 : n;
}

/* Answers a query from the cache, or hands it to forward.c; SERVFAIL into out when it
 * cannot take it. */
static size_t udp_forward(worker_t *w, udp_sock_t *s, const struct mmsghdr *m,
                          const uint8_t dst[16], unsigned ifindex, const uint8_t *pkt, size_t len,
                          uint8_t *out)
{
	fwd_udp_t *u = w->fwd_free;
	const wire_query_t *q = &w->ans.q; /* ans_process's parse of pkt */
	size_t max =
	        q->edns ? (q->edns_udp < WIRE_UDP_MIN ? WIRE_UDP_MIN : q->edns_udp) : WIRE_UDP_MIN;
	if (max > WIRE_EDNS_SIZE)
		max = WIRE_EDNS_SIZE;
	size_t hit = w->srv->cache ? cache_answer(w, pkt, len, q, max, out, WBUF) : 0;
	if (hit)
		return hit;
	if (u) {
		memcpy(&u->peer, m->msg_hdr.msg_name, m->msg_hdr.msg_namelen);
		u->peer_len = m->msg_hdr.msg_namelen;
		memcpy(u->dst, dst, 16);
		u->ifindex = ifindex;
		u->sock = s;
		if (w->dt)
			clock_gettime(CLOCK_REALTIME, &u->qtime);
		w->fwd_free = u->next;
		if (fwd_query(w->fwd, pkt, len, max, false, fwd_udp_done, u) == 0)
			return 0;
		w->fwd_free = u;
	} else {
		/* as many contexts as the cap: forward.c is full too */
		MET_INC(w->m.forward_over_cap);
	}
	return wire_error_response(pkt, len, WIRE_SERVFAIL, out, WBUF);
}

/*
 * The receive headers: set once (in_init), and after each recvmmsg only the lengths the
 * kernel wrote into the n it filled are set back (in_rearm) — the rest stay as they were.
 */
static void in_init(worker_t *w)
{
	for (int i = 0; i < BATCH; i++) {
		w->iov_in[i] = (struct iovec){w->rbuf[i], RBUF};
		w->in[i].msg_hdr = (struct msghdr){
		        .msg_name = &w->from[i],
		        .msg_namelen = sizeof(w->from[i]),
		        .msg_iov = &w->iov_in[i],
		        .msg_iovlen = 1,
		        .msg_control = w->cmsg_in[i],
		        .msg_controllen = CMSG_ROOM,
		};
	}
}

static void in_rearm(worker_t *w, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		w->in[i].msg_hdr.msg_namelen = sizeof(w->from[i]);
		w->in[i].msg_hdr.msg_controllen = CMSG_ROOM;
	}
}

static void on_udp(uv_poll_t *h, int status, int events)
{
	udp_sock_t *s = h->data;
	worker_t *w = s->w;
	(void)events;
	if (status < 0 || !batch_begin(w))
		return;
	MET_INC(w->m.wakeups);
	for (int round = 0; round < ROUNDS; round++) {
		int n = recvmmsg(s->fd, w->in, BATCH, MSG_DONTWAIT, NULL);
		MET_INC(w->m.recv_calls);
		if (n <= 0)
			break;
		MET_ADD(w->m.datagrams, (uint64_t)n);
		unsigned m = 0;
		struct timespec now;
		if (w->dt)
			clock_gettime(CLOCK_REALTIME, &now);
		for (int i = 0; i < n; i++) {
			struct msghdr *mh = &w->in[i].msg_hdr;
			if (mh->msg_flags & MSG_TRUNC) {
				MET_INC(w->m.dropped[MET_DROP_OVERSIZE]);
				continue; /* larger than any query: drop */
			}
			ans_client_t cl = {.tcp = false};
			unsigned ifindex;
			addr16(&w->from[i], cl.src);
			if (s->wildcard)
				pktinfo_in(mh, cl.dst, &ifindex);
			else
				memcpy(cl.dst, s->local, 16), ifindex = 0;
			size_t len = 0;
			count_query(w, &cl);
			ans_action_t act = ans_process(&w->ans, &cl, w->rbuf[i], w->in[i].msg_len,
			                               w->wbuf[m], WBUF, &len);
			count_answer(w, &cl, act, w->rbuf[i], w->in[i].msg_len, w->wbuf[m], len);
			dt_end_t tc, ts;
			if (w->dt && (act == ANS_REPLY || act == ANS_FORWARD)) {
				tap_ends(&tc, &ts, cl.src, port_of(&w->from[i]), cl.dst, s->port);
				dt_log_client_query(w->dt, false, &tc, &ts, w->rbuf[i],
				                    w->in[i].msg_len, &now);
			}
			if (act == ANS_FORWARD) {
				len = udp_forward(w, s, &w->in[i], cl.dst, ifindex, w->rbuf[i],
				                  w->in[i].msg_len, w->wbuf[m]);
				count_relayed(w, false, w->wbuf[m], len);
			} else if (act != ANS_REPLY) {
				continue;
			}
			if (!len)
				continue;
			if (w->dt)
				dt_log_client_response(w->dt, false, &tc, &ts, &now, w->wbuf[m],
				                       len);
			w->iov_out[m] = (struct iovec){w->wbuf[m], len};
			w->out[m].msg_hdr = (struct msghdr){
			        .msg_name = &w->from[i],
			        .msg_namelen = mh->msg_namelen,
			        .msg_iov = &w->iov_out[m],
			        .msg_iovlen = 1,
			};
			if (s->wildcard) {
				w->out[m].msg_hdr.msg_control = w->cmsg_out[m];
				w->out[m].msg_hdr.msg_controllen =
				        pktinfo_out(s->family, w->cmsg_out[m], cl.dst, ifindex);
			}
			m++;
		}
		for (unsigned sent = 0; sent < m;) {
			int k = sendmmsg(s->sfd, w->out + sent, m - sent, MSG_DONTWAIT);
			if (k > 0) {
				sent += (unsigned)k;
				continue;
			}
			log_debug("udp send: %s", strerror(errno));
			if (k == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
				break; /* the socket buffer is full: UDP may drop */
			sent++;        /* this one reply cannot go (to port 0, say): the rest can */
		}
		in_rearm(w, (unsigned)n);
		if (n < BATCH)
			break;
	}
	batch_end(w);
}

/* ---- TCP ------------------------------------------------------------------------------------ */

static void conn_release(conn_t *c)
{
	if (--c->refs > 0)
		return;
	worker_t *w = c->w;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	MET_ADD(w->m.tcp_open, (uint64_t)-1);
	if (c->idled)
		MET_INC(w->m.tcp_closed_idle);
	free(c->buf);
	free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
	conn_release(h->data);
}

static void conn_close(conn_t *c)
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
	c->idled = !c->closing;
	conn_close(c);
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
	if (c->len >= 2 && c->len - 2 >= ((size_t)c->buf[0] << 8 | c->buf[1]))
		return; /* a frame still to answer (conn_resume will) */
	conn_close(c);
}

static void on_written(uv_write_t *req, int status)
{
	wreq_t *r = (wreq_t *)req;
	conn_t *c = r->c;
	c->pending -= r->len;
	if (status < 0)
		conn_close(c);
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
	framed[0] = (uint8_t)(len >> 8);
	framed[1] = (uint8_t)len;
	size_t total = len + 2, done = 0;
	if (c->pending == 0) {
		uv_buf_t b = uv_buf_init((char *)framed, (unsigned)total);
		int n = uv_try_write((uv_stream_t *)&c->h, &b, 1);
		if (n > 0)
			done = (size_t)n;
		else if (n != UV_EAGAIN && n != UV_ENOSYS) {
			conn_close(c);
			return;
		}
	}
	if (done == total)
		return;
	wreq_t *r = malloc(sizeof(*r) + total - done);
	if (!r) {
		conn_close(c);
		return;
	}
	r->c = c, r->len = total - done;
	memcpy(r->data, framed + done, r->len);
	uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)r->len);
	if (uv_write(&r->req, (uv_stream_t *)&c->h, &b, 1, on_written)) {
		free(r);
		conn_close(c);
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
		count_relayed(c->w, true, resp, len);
	if (len && !c->closing) {
		uint8_t *out = c->w->tcp_out;
		memcpy(out + 2, resp, len);
		conn_send(c, out, len);
		if (c->w->dt) {
			dt_end_t cl, sv;
			tap_ends(&cl, &sv, c->src, c->sport, c->dst, c->dport);
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
	count_query(w, &cl);
	ans_action_t act = ans_process(&w->ans, &cl, pkt, len, w->tcp_out + 2, WIRE_TCP_MAX, &out);
	count_answer(w, &cl, act, pkt, len, w->tcp_out + 2, out);
	dt_end_t tc, ts;
	struct timespec now;
	if (w->dt && (act == ANS_REPLY || act == ANS_FORWARD)) {
		clock_gettime(CLOCK_REALTIME, &now);
		tap_ends(&tc, &ts, c->src, c->sport, c->dst, c->dport);
		dt_log_client_query(w->dt, true, &tc, &ts, pkt, len, &now);
	}
	if (act == ANS_FORWARD && w->srv->cache &&
	    (out = cache_answer(w, pkt, len, &w->ans.q, WIRE_TCP_MAX, w->tcp_out + 2,
	                        WIRE_TCP_MAX))) {
		count_relayed(w, true, w->tcp_out + 2, out);
		conn_send(c, w->tcp_out, out);
		if (w->dt)
			dt_log_client_response(w->dt, true, &tc, &ts, &now, w->tcp_out + 2, out);
		return;
	}
	if (act == ANS_FORWARD) {
		tcp_fwd_t *fq = NULL; /* conn_process keeps fwds below TCP_FWD_MAX: one is free */
		for (size_t i = 0; i < TCP_FWD_MAX && !fq; i++)
			if (!c->fq[i].used)
				fq = &c->fq[i];
		if (fq) {
			fq->c = c;
			if (w->dt)
				fq->qtime = now;
		}
		if (fq && fwd_query(w->fwd, pkt, len, WIRE_TCP_MAX, true, fwd_tcp_done, fq) == 0) {
			fq->used = true;
			c->refs++;
			c->fwds++;
			return;
		}
		out = wire_error_response(pkt, len, WIRE_SERVFAIL, w->tcp_out + 2, WIRE_TCP_MAX);
		count_relayed(w, true, w->tcp_out + 2, out);
	} else if (act != ANS_REPLY) {
		conn_close(c); /* a message we would not answer on UDP ends a TCP session */
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
	if (!batch_begin(c->w)) {
		conn_close(c);
		return;
	}
	size_t off = 0;
	while (!c->closing && c->pending <= TCP_WRITE_HIGH && c->fwds < TCP_FWD_MAX &&
	       c->len - off >= 2) {
		size_t mlen = (size_t)c->buf[off] << 8 | c->buf[off + 1];
		if (mlen < WIRE_HDR) {
			conn_close(c); /* zero or header-less frames: not DNS */
			break;
		}
		if (c->len - off - 2 < mlen)
			break;
		conn_query(c, c->buf + off + 2, mlen);
		off += 2 + mlen;
	}
	batch_end(c->w);
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
		conn_close(c);
		return;
	}
	if (n == 0)
		return;
	c->len += (size_t)n;
	uv_timer_again(&c->idle);
	conn_process(c);
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

static void on_connection(uv_stream_t *server, int status)
{
	tcp_listener_t *l = server->data;
	worker_t *w = l->w;
	if (status < 0)
		return;
	if (w->nconns >= w->max_conns) {
		MET_INC(w->m.tcp_closed_cap);
		conn_reject(server, w);
		return;
	}
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
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	MET_INC(w->m.tcp_accepted);
	MET_INC(w->m.tcp_open);
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	if (uv_accept(server, (uv_stream_t *)&c->h) ||
	    uv_tcp_getpeername(&c->h, (struct sockaddr *)&ss, &len)) {
		conn_close(c);
		return;
	}
	addr16(&ss, c->src);
	c->sport = port_of(&ss);
	len = sizeof(ss);
	if (uv_tcp_getsockname(&c->h, (struct sockaddr *)&ss, &len) == 0)
		addr16(&ss, c->dst), c->dport = port_of(&ss);
	uv_timer_start(&c->idle, on_idle, w->snap->cfg.tcp_idle_ms, w->snap->cfg.tcp_idle_ms);
	conn_read_start(c);
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
static void worker_close_all(worker_t *w)
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
		conn_close(c);
	uv_walk(&w->loop, close_walk, NULL);
}

static void on_stop(uv_async_t *a)
{
	worker_t *w = a->data;
	if (w->m.wakeups)
		log_info("worker %u: %llu datagrams, %.2f per recvmmsg, %.2f per wake-up", w->idx,
		         (unsigned long long)w->m.datagrams,
		         (double)w->m.datagrams / (double)w->m.recv_calls,
		         (double)w->m.datagrams / (double)w->m.wakeups);
	if (w->fwd) {
		const fwd_stats_t *st = fwd_stats(w->fwd);
		if (st->forwarded || w->m.forward_over_cap)
			log_info(
			        "worker %u: forwarded %llu, answered %llu, SERVFAIL %llu, over the "
			        "in-flight cap %llu, mismatched answers dropped %llu, TCP retries "
			        "%llu, joined an identical query %llu, stale %llu, prefetches %llu",
			        w->idx, (unsigned long long)st->forwarded,
			        (unsigned long long)st->answered, (unsigned long long)st->servfail,
			        (unsigned long long)(st->overload + w->m.forward_over_cap),
			        (unsigned long long)st->mismatched,
			        (unsigned long long)st->tcp_retries, (unsigned long long)st->joined,
			        (unsigned long long)st->stale, (unsigned long long)st->prefetches);
	}
	worker_close_all(w);
}

static void on_beat(uv_timer_t *t)
{
	worker_t *w = t->data;
	__atomic_store_n(&w->m.heartbeat_ns, mono_ns(), __ATOMIC_RELAXED);
	adopt_newest(w); /* an idle worker lets the previous configuration go too */
}

/* The test hook behind INTERNALD_TEST_HOOKS (internald(8)): a stuck event loop. */
static void on_stall(uv_async_t *a)
{
	worker_t *w = a->data;
	log_warn("event=test-stall worker=%u seconds=%d", w->idx, HOOK_STALL_S);
	sleep(HOOK_STALL_S);
}

static void worker_main(void *arg)
{
	worker_t *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int worker_init(srv_t *s, worker_t *w, int (*fds)[3], char *err)
{
	const config_t *cfg = s->cfg;
	int rc = uv_loop_init(&w->loop);
	if (rc) {
		snprintf(err, CFG_ERR_MAX, "uv_loop_init: %s", uv_strerror(rc));
		return -EIO;
	}
	w->srv = s;
	w->snap = s->snap;
	w->held = s->snap->seq;
	in_init(w);
	w->ans.conf = &s->snap->conf;
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
	w->m.heartbeat_ns = mono_ns();
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
		addr16(&cfg->listen[i].ss, u->local);
		u->wildcard = is_wildcard(&cfg->listen[i].ss);
		struct sockaddr_storage bound;
		socklen_t blen = sizeof(bound);
		if (getsockname(u->fd, (struct sockaddr *)&bound, &blen) == 0)
			u->port = port_of(&bound);
		uv_poll_init(&w->loop, &u->poll, u->fd);
		u->poll.data = u;
		uv_poll_start(&u->poll, UV_READABLE, on_udp);
		tcp_listener_t *t = &w->tcp[i];
		t->w = w;
		uv_tcp_init(&w->loop, &t->h);
		t->h.data = t;
		if ((rc = uv_tcp_open(&t->h, fds[i][1])) ||
		    (rc = uv_listen((uv_stream_t *)&t->h, 1024, on_connection))) {
			snprintf(err, CFG_ERR_MAX, "listen on %s: %s", cfg->listen[i].text,
			         uv_strerror(rc));
			return -EIO;
		}
	}
	w->dt = dt_worker(s->dt, w->idx);
	if (s->conf->forward) {
		if ((rc = fwd_create(&w->fwd, &w->loop, &s->snap->fwd))) {
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
	bool pktinfo = kind == SOCK_QUERIES && is_wildcard(&ss);
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
		*port = port_of(&ss);
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
		log_info("replies on %s leave by the listening socket event=reply-socket "
		         "connect=\"%s\"",
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
	uint16_t want = port_of(&a->ss);
	bool wildcard = is_wildcard(&a->ss);
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
			log_info("listening on %s (udp, tcp) event=bind sockets=%u",
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
static snap_t *snap_new(const config_t *cfg, const ans_conf_t *conf, cache_t *cache)
{
	snap_t *sn = calloc(1, sizeof(*sn));
	if (!sn)
		return NULL;
	sn->cfg = *cfg;
	sn->conf = *conf;
	sn->conf.nsid = conf->nsid ? sn->cfg.nsid : NULL;
	sn->conf.nsid_len = conf->nsid ? strlen(sn->cfg.nsid) : 0;
	sn->conf.region = sn->cfg.region; /* the server's region code, also into the copy */
	sn->fwd = (fwd_conf_t){
	        sn->cfg.upstream,           sn->cfg.nupstream,    sn->cfg.upstream_timeout_ms,
	        sn->cfg.upstream_budget_ms, sn->cfg.max_inflight, cache,
	        sn->cfg.client_timer_ms};
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
	if (!s->workers || !fds)
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
	if (!(s->snap = snap_new(cfg, conf, s->cache))) {
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
		if ((rc = worker_init(s, &s->workers[w], fds[w], err)))
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
		uv_thread_create(&s->workers[i].thread, worker_main, &s->workers[i]);
	__atomic_store_n(&s->state, SRV_READY, __ATOMIC_RELEASE);
	log_info("serving with %u worker%s event=serving listen=%zu", s->nworkers,
	         s->nworkers == 1 ? "" : "s", s->cfg->nlisten);
	uv_run(&s->main, UV_RUN_DEFAULT);
	for (unsigned i = 0; i < s->nworkers; i++)
		uv_thread_join(&s->workers[i].thread);
	uv_loop_close(&s->main);
	if (s->cache) {
		cache_stats_t st;
		cache_stats(s->cache, &st);
		log_info("cache: hits %llu, misses %llu, stale answers %llu, prefetches %llu, "
		         "entries %llu, bytes %llu, evictions %llu",
		         (unsigned long long)st.hits, (unsigned long long)st.misses,
		         (unsigned long long)st.stale, (unsigned long long)st.prefetches,
		         (unsigned long long)st.entries, (unsigned long long)st.bytes,
		         (unsigned long long)st.evictions);
	}
	return 0;
}

void srv_free(srv_t *s)
{
	if (!s)
		return;
	for (unsigned i = 0; s->workers && i < s->nworkers; i++) {
		worker_t *w = &s->workers[i];
		if (w->srv) {
			worker_close_all(w);
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
	free(s->workers);
	for (snap_t *sn = s->snap, *prev; sn; sn = prev) {
		prev = sn->prev;
		free(sn);
	}
	uv_mutex_destroy(&s->scrape);
	if (s->dt) {
		dt_stats_t st;
		dt_stats(s->dt, &st);
		log_info("dnstap: %llu frames queued, %llu dropped", (unsigned long long)st.sent,
		         (unsigned long long)st.dropped);
	}
	dt_free(s->dt); /* after the workers: they log until they stop */
	cache_free(s->cache);
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
		log_info("dnstap to %s (identity %s)", s->cfg->dnstap, identity);
	return rc;
}

/* ---- reload, metrics, health (include/server.h) -----------------------------------------------
 */

/* On the worker's thread, at the start of a batch or a heartbeat: run with sn from now
 * on. Nothing of the previous configuration is read after held says sn. A forwarder that
 * refuses sn (srv_reload lets no such configuration through) keeps the worker on the
 * one it has, and held with it. */
static void worker_adopt(worker_t *w, const snap_t *sn)
{
	if (w->fwd && fwd_set_conf(w->fwd, &sn->fwd))
		return;
	w->snap = sn;
	w->ans.conf = &sn->conf;
	unsigned per = sn->cfg.tcp_max_conns / w->srv->nworkers;
	w->max_conns = per ? per : 1;
	w->gen = UINT64_MAX; /* resolve the default org again */
	w->snapshot = UINT64_MAX;
	__atomic_store_n(&w->held, sn->seq, __ATOMIC_RELEASE);
}

/*
 * Frees the configurations no one can run with again: those older than the oldest a
 * worker has adopted. A worker only ever moves to the newest (adopt_newest), so one that
 * holds seq k never takes one below k; the newest is never freed. The scrape lock keeps
 * srv_metrics, which reads the newest under it, out while they go. Main thread.
 */
static void snap_reclaim(srv_t *s)
{
	uint64_t oldest = s->snap->seq;
	for (unsigned i = 0; i < s->nworkers; i++) {
		uint64_t h = __atomic_load_n(&s->workers[i].held, __ATOMIC_ACQUIRE);
		if (h < oldest)
			oldest = h;
	}
	uv_mutex_lock(&s->scrape);
	snap_t *keep = s->snap;
	while (keep->prev && keep->prev->seq >= oldest)
		keep = keep->prev;
	snap_t *dead = keep->prev;
	keep->prev = NULL;
	uv_mutex_unlock(&s->scrape);
	while (dead) {
		snap_t *p = dead->prev;
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
	const snap_t *cur = s->snap;
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
	snap_t *sn = snap_new(cfg, conf, s->cache);
	if (!sn) {
		snprintf(err, CFG_ERR_MAX, "out of memory");
		return -ENOMEM;
	}
	sn->seq = s->snap->seq + 1;
	sn->prev = s->snap; /* a worker may still run with it until its next batch */
	__atomic_store_n(&s->snap, sn, __ATOMIC_RELEASE);
	snap_reclaim(s);
	return 0;
}

const config_t *srv_config(const srv_t *s)
{
	return &s->snap->cfg;
}

int srv_metrics(srv_t *s, met_snapshot_t *out)
{
	memset(out, 0, sizeof(*out));
	out->workers = s->nworkers;
	out->reloads = MET_LOAD(s->reloads);
	out->reload_failures = MET_LOAD(s->reload_failures);
	uv_mutex_lock(&s->scrape); /* also keeps snap_reclaim from freeing sn */
	const snap_t *sn = __atomic_load_n(&s->snap, __ATOMIC_ACQUIRE);
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
		out->cache =
		        (met_cache_t){true,       cs.hits,      cs.misses,  cs.stale, cs.prefetches,
		                      cs.inserts, cs.evictions, cs.entries, cs.bytes};
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
		}
		reg_txn_abort(t);
	}
	return 0;
}

int srv_health(const srv_t *s, char *msg, size_t cap)
{
	uint64_t now = mono_ns();
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
	snprintf(msg, cap, "%s\n",
	         st == SRV_READY      ? "ready"
	         : st == SRV_STOPPING ? "stopping"
	                              : "starting");
	return st == SRV_READY ? 200 : 503;
}
