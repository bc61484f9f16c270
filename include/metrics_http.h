/*
 * metrics_http — /metrics, /health and /ready over HTTP (src/metrics_http.c,
 * libmicrohttpd, its own thread; the only file that includes microhttpd.h).
 * GET /metrics (metrics.h's exposition), /health (server.h's srv_health), /ready
 * (srv_ready); anything else 404.
 */
#ifndef INTERNALD_METRICS_HTTP_H
#define INTERNALD_METRICS_HTTP_H

#include "config.h"
#include "metrics.h"
#include "server.h"

typedef struct met_http met_http_t;
/*
 * Binds addr (port 0: the kernel picks; the bound address is logged) and starts serving
 * on a thread of its own. Until met_http_attach, /ready and /health say "starting".
 * Allocates *out (met_http_stop). Returns 0 or < 0 with err naming the address.
 */
int met_http_start(met_http_t **out, const cfg_addr_t *addr, const char *version, char *err);
/* Serves s from now on (NULL: starting again, before s is freed). */
void met_http_attach(met_http_t *h, srv_t *s);
/* Stops the thread, closes the socket, frees h. NULL is a no-op. */
void met_http_stop(met_http_t *h);
/* The process_* numbers of this process, from /proc/self. 0 or -errno. */
int met_process_read(met_process_t *out);

#endif
