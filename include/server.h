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
/* The dnstap writer (for its dt_stats / dt_dropped), NULL when --dnstap is off. */
const dt_t *srv_dnstap(const srv_t *s);

#endif
