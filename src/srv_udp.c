/*
 * srv_udp.c — the UDP path of a worker: recv (recvmmsg into the worker's fixed
 * buffers), handle (answer.c, or the cache and forward.c), send (sendmmsg). On a
 * wildcard address the control messages (IPV6_PKTINFO/IP_PKTINFO) say which address a
 * query came to and set it as the reply's source. It must never allocate per query
 * nor make more than one recvmmsg and one sendmmsg per batch.
 */
#include <errno.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "srv_impl.h"

/* ---- control messages (PKTINFO) -------------------------------------------------------- */

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
		log_debug("event=udp-send status=failed reason=\"%s\"", strerror(errno));
}

static void fwd_udp_done(void *arg, const uint8_t *resp, size_t len)
{
	fwd_udp_t *u = arg;
	worker_t *w = u->sock->w;
	if (len) {
		srv_count_relayed(w, false, resp, len);
		udp_send_one(u->sock, &u->peer, u->peer_len, u->dst, u->ifindex, resp, len);
	}
	if (len && w->dt) {
		dt_end_t cl, sv;
		dt_end_from_sockaddr(&cl, (const struct sockaddr *)&u->peer);
		srv_tap_ends(&cl, &sv, cl.addr, cl.port, u->dst, u->sock->port);
		dt_log_client_response(w->dt, false, &cl, &sv, &u->qtime, resp, len);
	}
	u->next = w->fwd_free;
	w->fwd_free = u;
}
/* Answers a query from the cache, or hands it to forward.c; SERVFAIL into out when it
 * cannot take it. */
static size_t udp_forward(worker_t *w, udp_sock_t *s, const struct mmsghdr *m,
                          const uint8_t dst[16], unsigned ifindex, const uint8_t *pkt, size_t len,
                          uint8_t *out)
{
	fwd_udp_t *u = w->fwd_free;
	const wire_query_t *q = &w->ans.q; /* ans_process's parse of pkt */
	size_t n = 0;
	fwd_result_t r = fwd_resolve(w->fwd, pkt, len, q, wire_udp_size(q), false, out, WBUF, &n,
	                             u ? fwd_udp_done : NULL, u);
	if (r == FWD_PENDING) { /* no callback before we return: u is filled in time */
		memcpy(&u->peer, m->msg_hdr.msg_name, m->msg_hdr.msg_namelen);
		u->peer_len = m->msg_hdr.msg_namelen;
		memcpy(u->dst, dst, 16);
		u->ifindex = ifindex;
		u->sock = s;
		if (w->dt)
			clock_gettime(CLOCK_REALTIME, &u->qtime);
		w->fwd_free = u->next;
		return 0;
	}
	if (r == FWD_SERVFAIL && !u) /* as many contexts as the cap: forward.c is full too */
		MET_INC(w->m.forward_over_cap);
	return n;
}

/*
 * The receive headers: set once (srv_udp_init), and after each recvmmsg only the lengths the
 * kernel wrote into the n it filled are set back (in_rearm) — the rest stay as they were.
 */
void srv_udp_init(worker_t *w)
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

/* The address a datagram came to (and its interface): PKTINFO on a wildcard socket,
 * else the bound address. */
static void udp_dst(const udp_sock_t *s, const struct msghdr *mh, uint8_t dst[16],
                    unsigned *ifindex)
{
	if (s->wildcard) {
		pktinfo_in(mh, dst, ifindex);
	} else {
		memcpy(dst, s->local, 16);
		*ifindex = 0;
	}
}

/* recv: one recvmmsg into the worker's batch buffers. The number read, or <= 0. */
static int udp_recv(udp_sock_t *s)
{
	worker_t *w = s->w;
	int n = recvmmsg(s->fd, w->in, BATCH, MSG_DONTWAIT, NULL);
	MET_INC(w->m.recv_calls);
	if (n > 0)
		MET_ADD(w->m.datagrams, (uint64_t)n);
	return n;
}

/* The reply in wbuf[m] (len bytes) to datagram i as out[m], from the address it came to. */
static void udp_queue(udp_sock_t *s, int i, unsigned m, size_t len, const uint8_t dst[16],
                      unsigned ifindex)
{
	worker_t *w = s->w;
	w->iov_out[m] = (struct iovec){w->wbuf[m], len};
	w->out[m].msg_hdr = (struct msghdr){
	        .msg_name = &w->from[i],
	        .msg_namelen = w->in[i].msg_hdr.msg_namelen,
	        .msg_iov = &w->iov_out[m],
	        .msg_iovlen = 1,
	};
	if (s->wildcard) {
		w->out[m].msg_hdr.msg_control = w->cmsg_out[m];
		w->out[m].msg_hdr.msg_controllen =
		        pktinfo_out(s->family, w->cmsg_out[m], dst, ifindex);
	}
}

/* handle: datagram i answered (answer.c, or the cache and forward.c) into wbuf[m]. True
 * when a reply is queued as out[m]; now: the batch's time, for dnstap. */
static bool udp_handle(udp_sock_t *s, int i, unsigned m, const struct timespec *now)
{
	worker_t *w = s->w;
	struct msghdr *mh = &w->in[i].msg_hdr;
	const uint8_t *pkt = w->rbuf[i];
	size_t plen = w->in[i].msg_len;
	if (mh->msg_flags & MSG_TRUNC) {
		MET_INC(w->m.dropped[MET_DROP_OVERSIZE]);
		return false; /* larger than any query: drop */
	}
	ans_client_t cl = {.tcp = false};
	unsigned ifindex;
	srv_addr16(&w->from[i], cl.src);
	udp_dst(s, mh, cl.dst, &ifindex);
	size_t len = 0;
	srv_count_query(w, &cl);
	ans_action_t act = ans_process(&w->ans, &cl, pkt, plen, w->wbuf[m], WBUF, &len);
	met_count_answer(&w->m, &w->ans, cl.tcp, act, pkt, plen, w->wbuf[m], len);
	dt_end_t tc, ts;
	if (w->dt && (act == ANS_REPLY || act == ANS_FORWARD)) {
		srv_tap_ends(&tc, &ts, cl.src, srv_port_of(&w->from[i]), cl.dst, s->port);
		dt_log_client_query(w->dt, false, &tc, &ts, pkt, plen, now);
	}
	if (act == ANS_FORWARD) {
		len = udp_forward(w, s, &w->in[i], cl.dst, ifindex, pkt, plen, w->wbuf[m]);
		srv_count_relayed(w, false, w->wbuf[m], len);
	} else if (act != ANS_REPLY) {
		return false;
	}
	if (!len)
		return false;
	if (w->dt)
		dt_log_client_response(w->dt, false, &tc, &ts, now, w->wbuf[m], len);
	udp_queue(s, i, m, len, cl.dst, ifindex);
	return true;
}

/* send: the m replies queued, with as few sendmmsg calls as the socket takes. */
static void udp_send(udp_sock_t *s, unsigned m)
{
	worker_t *w = s->w;
	for (unsigned sent = 0; sent < m;) {
		int k = sendmmsg(s->sfd, w->out + sent, m - sent, MSG_DONTWAIT);
		if (k > 0) {
			sent += (unsigned)k;
			continue;
		}
		log_debug("event=udp-send status=failed reason=\"%s\"", strerror(errno));
		if (k == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
			break; /* the socket buffer is full: UDP may drop */
		sent++;        /* this one reply cannot go (to port 0, say): the rest can */
	}
}

void srv_udp_readable(uv_poll_t *h, int status, int events)
{
	udp_sock_t *s = h->data;
	worker_t *w = s->w;
	(void)events;
	if (status < 0 || !srv_batch_begin(w))
		return;
	MET_INC(w->m.wakeups);
	/* one clock read per batch: a round ends where the next one's receive begins */
	uint64_t t0 = clock_mono_ns();
	for (int round = 0; round < ROUNDS; round++) {
		int n = udp_recv(s);
		if (n <= 0)
			break;
		unsigned m = 0;
		struct timespec now;
		if (w->dt)
			clock_gettime(CLOCK_REALTIME, &now);
		for (int i = 0; i < n; i++)
			if (udp_handle(s, i, m, &now))
				m++;
		udp_send(s, m);
		uint64_t t1 = clock_mono_ns();
		met_count_batch(&w->m, MET_UDP, m, t1 - t0);
		t0 = t1;
		in_rearm(w, (unsigned)n);
		if (n < BATCH)
			break;
	}
	srv_batch_end(w);
}
