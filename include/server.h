/*
 * server — internald's listeners and workers (libuv). Each worker is one thread with
 * its own uv_loop, its own SO_REUSEPORT UDP and TCP sockets on every listen address,
 * its own registry read snapshot (renewed once per batch of packets) and fixed
 * buffers. UDP is read and written in batches (recvmmsg/sendmmsg under uv_poll).
 */
#ifndef INTERNALD_SERVER_H
#define INTERNALD_SERVER_H

#include "answer.h"
#include "config.h"
#include "metrics.h"
#include "dnstap.h"
#include "registry.h"

typedef struct srv srv_t;

/*
 * Binds every socket (so a bind error is reported before anything starts) and prepares
 * the workers. cfg, conf and reg must outlive the server. Allocates *out (srv_free).
 * Returns 0, or < 0 with err (CFG_ERR_MAX bytes) naming the address.
 */
int srv_create(srv_t **out, const config_t *cfg, const ans_conf_t *conf, reg_t *reg, char *err);
/* Runs the workers until SIGINT or SIGTERM; returns 0 once every worker has stopped. */
int srv_run(srv_t *s);
void srv_free(srv_t *s);

/*
 * SIGHUP calls fn(s, arg) on the main loop (srv_run's thread); fn re-reads the
 * configuration and calls srv_reload, returning 0 when it applied one (counted in
 * internald_reloads_total) or < 0 when it kept the running one.
 */
void srv_on_reload(srv_t *s, int (*fn)(srv_t *s, void *arg), void *arg);
/*
 * Publishes cfg and conf (copied) to the workers: each adopts them at the start of its
 * next batch. Only what needs no rebind takes effect (TTL, NSID, allow list, default
 * org, upstreams, timeouts, the TCP caps); the caller keeps the rest as it runs. -EINVAL
 * with err when the change needs a restart (forwarding switched on or off, max-inflight).
 * Call from the main loop only.
 */
int srv_reload(srv_t *s, const config_t *cfg, const ans_conf_t *conf, char *err);
/* The configuration in force (the last one published). Main loop only. */
const config_t *srv_config(const srv_t *s);

/* From any thread (the metrics server's): the workers' counters summed, the upstreams',
 * the registry's position. Briefly locks out a worker closing its forwarder. 0. */
int srv_metrics(srv_t *s, met_snapshot_t *out);
/* 200 when every worker's loop turned within the last 3 s, else 503; msg says which
 * worker stalled. Any thread. */
int srv_health(const srv_t *s, char *msg, size_t cap);
/* 200 once serving (every listener bound, the registry open, the workers started);
 * 503 while starting (s may be NULL) and once a stop signal came. Any thread. */
int srv_ready(const srv_t *s, char *msg, size_t cap);

#endif
