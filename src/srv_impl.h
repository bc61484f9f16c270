/*
 * srv_impl.h — the server's private contract between its files (never included outside
 * src/server.c, src/srv_worker.c, src/srv_udp.c, src/srv_tcp.c; include/server.h is the
 * public one). The worker struct, the listeners, the connection, and the few functions
 * one file calls in another:
 *
 *   server.c      lifecycle: bind, create, run, signals, reload, metrics, health
 *   srv_worker.c  a worker: its loop, its batch (registry snapshot), its counters
 *   srv_udp.c     the UDP path: recv, handle, send (recvmmsg/sendmmsg, PKTINFO)
 *   srv_tcp.c     the TCP path: accept, frames, writes, back-pressure
 */
#ifndef INTERNALD_SRV_IMPL_H
#define INTERNALD_SRV_IMPL_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

#include "cache.h"
#include "dnstap.h"
#include "forward.h"
#include "server.h"
#include "srcshare.h"
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
 * (cfg_snap_reclaim), or with the server. */
typedef struct cfg_snap {
	config_t cfg;
	ans_conf_t conf;
	fwd_conf_t fwd;
	uint64_t seq; /* 0 for the first; each reload's is one more */
	struct cfg_snap *prev;
} cfg_snap_t;

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
	bool idled;   /* closed by the idle timer (metrics) */
	uint8_t why;  /* CONN_SLOW, ...: why the server closed it (metrics) */
	bool slotted; /* counted in the srv's tcp_src under slot */
	uint32_t slot;
	uint64_t quiet_ms;         /* the loop's time of its last whole frame (or its accept) */
	uint64_t frame_ms;         /* when the frame being read began; 0: none begun */
	uint64_t frames;           /* whole frames read */
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
	uint64_t gen;
	uint64_t txn_id;       /* the registry transaction the last batch read (reg_txn_id) */
	uint64_t fd_logged_ms; /* the loop's time EMFILE/ENFILE was last logged (0: never) */
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
	met_worker_t m;             /* this worker's counters: only it writes them */
	const cfg_snap_t *cfg_snap; /* the configuration this worker runs with */
	uint64_t held;    /* cfg_snap->seq, published (atomic) once adopted: cfg_snap_reclaim */
	uv_timer_t beat;  /* stamps m.heartbeat_ns */
	uv_async_t stall; /* test hook */
	const fwd_stats_t *fwds; /* the forwarder's counters, or fwd_last once it closed */
	fwd_stats_t fwd_last;
	bool reg_failed; /* the last renew failed: logged once */
	bool waiting;    /* the registry is not ready (worker 0 logs the changes) */
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
	cfg_snap_t *cfg_snap; /* the newest configuration (workers load it, acquire) */
	int state;            /* SRV_STARTING, SRV_READY, SRV_STOPPING (atomic) */
	bool hooks;           /* INTERNALD_TEST_HOOKS is set */
	uv_signal_t sighup, sigusr2;
	int (*reload)(srv_t *s, void *arg);
	void *reload_arg;
	uint64_t reloads, reload_failures;
	uv_mutex_t scrape;   /* a scrape against a worker closing its forwarder */
	dt_t *dt;            /* NULL: no dnstap */
	cache_t *cache;      /* forwarded answers, shared by the workers; NULL: none */
	srcshare_t *tcp_src; /* TCP connections per source, all workers */
};

enum { SRV_STARTING, SRV_READY, SRV_STOPPING };

/* ---- srv_worker.c ------------------------------------------------------------------------ */

/* Any socket address as 16 bytes of IPv6 (IPv4 as v4-mapped). */
void srv_addr16(const struct sockaddr_storage *ss, uint8_t out[16]);
uint16_t srv_port_of(const struct sockaddr_storage *ss);
bool srv_is_wildcard(const struct sockaddr_storage *ss);

/* Prepares worker w of s on its sockets fds (SOCK_QUERIES, SOCK_TCP, SOCK_REPLIES of
 * each listen address). 0, or < 0 with err. */
int srv_worker_init(srv_t *s, worker_t *w, int (*fds)[3], char *err);
void srv_worker_main(void *arg);
/* Closes the forwarder, every connection (with its own callbacks), then the rest. */
void srv_worker_close_all(worker_t *w);
/* After srv_worker_init (even a failed one): closes and frees what it holds. */
void srv_worker_free(worker_t *w);

/* A batch: the newest configuration adopted, the registry snapshot renewed (false: the
 * registry cannot be read, answer nothing), then reset by srv_batch_end. */
bool srv_batch_begin(worker_t *w);
void srv_batch_end(worker_t *w);

/* The counters (metrics.h): a few stores into the worker's own struct, per query. */
void srv_count_query(worker_t *w, const ans_client_t *cl);
/* A response relayed from upstream (or the SERVFAIL of a failed forward). */
void srv_count_relayed(worker_t *w, bool tcp, const uint8_t *resp, size_t len);

/* dnstap (include/dnstap.h): the client's and our end of a message. */
void srv_tap_ends(dt_end_t *client, dt_end_t *server, const uint8_t src[16], uint16_t sport,
                  const uint8_t dst[16], uint16_t dport);

/* ---- srv_udp.c --------------------------------------------------------------------------- */

/* Sets the worker's receive headers once. */
void srv_udp_init(worker_t *w);
/* uv_poll callback of a udp_sock_t: reads, answers and sends batches. */
void srv_udp_readable(uv_poll_t *h, int status, int events);

/* ---- srv_tcp.c --------------------------------------------------------------------------- */

/* uv_listen callback of a tcp_listener_t. */
void srv_tcp_accept(uv_stream_t *server, int status);
void srv_conn_close(conn_t *c);

#endif
