/*
 * metrics_http — /metrics, /health and /ready over HTTP (src/metrics_http.c,
 * libmicrohttpd, its own thread; the only file that includes microhttpd.h).
 * GET /metrics, /health and /ready from whatever is attached (internald's server, or
 * internalctl follow); anything else 404. It knows neither: internalctl links it too.
 */
#ifndef INTERNALD_METRICS_HTTP_H
#define INTERNALD_METRICS_HTTP_H

#include "config.h"
#include "metrics.h"

typedef struct met_http met_http_t;
/* What the endpoint serves: called on its thread, so each must be safe to call
 * concurrently with the program (relaxed loads, a mutex). ready and health return the
 * HTTP status with the body in msg. /metrics: snapshot (internald: met_render of it,
 * with the version, the previous scrape's time and the process_* families), or else
 * render (any families of its own, the process_* ones added). */
typedef struct {
	void *arg;
	int (*ready)(void *arg, char *msg, size_t cap);
	int (*health)(void *arg, char *msg, size_t cap);
	int (*snapshot)(void *arg, met_snapshot_t *out);
	int (*render)(void *arg, met_buf_t *b);
} met_source_t;
/*
 * Binds addr (port 0: the kernel picks; the bound address is logged) and starts serving
 * on a thread of its own. Until met_http_attach, /ready and /health say "starting".
 * Allocates *out (met_http_stop). Returns 0 or < 0 with err naming the address.
 */
int met_http_start(met_http_t **out, const cfg_addr_t *addr, const char *version,
                   const char *revision, char *err);
/* Serves src from now on (NULL: starting again, before what it reads is freed). src is
 * the caller's and must outlive the attachment. */
void met_http_attach(met_http_t *h, const met_source_t *src);
/* Stops the thread, closes the socket, frees h. NULL is a no-op. */
void met_http_stop(met_http_t *h);
/* The process_* numbers of this process, from /proc/self. 0 or -errno. */
int met_process_read(met_process_t *out);

#endif
