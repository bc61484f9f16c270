/*
 * forward — the upstream client of one worker (libuv): every name outside our zones
 * goes to the upstream resolvers (internald(7), FORWARDING).
 *
 * UDP from a random port with a fresh random ID per try (getrandom); an answer counts
 * only when its source address and port, ID and question match; TC -> the same query
 * over TCP; per-try timeout, next upstream, SERVFAIL when every try failed or the
 * budget ran out; a cap on queries in flight. Nothing here blocks the worker's loop.
 */
#ifndef INTERNALD_FORWARD_H
#define INTERNALD_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cache.h"
#include "config.h"
#include "metrics.h"
#include "dnstap.h"

typedef struct fwd fwd_t;

typedef struct {
	const cfg_addr_t *upstreams;
	size_t n;
	unsigned timeout_ms;   /* per try */
	unsigned budget_ms;    /* all tries */
	unsigned max_inflight; /* excess queries get SERVFAIL at once */
	/* The process's cache (NULL: none), shared by every worker's forwarder: answers go
	 * into it, identical questions in flight in any worker go upstream once, and a
	 * client waiting client_timer_ms gets a stale answer from it (RFC 8767). */
	cache_t *cache;
	unsigned client_timer_ms;
	/* The EDNS payload size toward upstreams (0: 1232, as the DNS flag day 2020 and
	 * unbound): the query goes with an OPT of our own, the client's DO bit and no
	 * options of the client's (a cookie, padding, a client subnet are per hop). */
	unsigned edns_size;
} fwd_conf_t;

/* One upstream's counters (bumped with MET_INC: a scrape reads them from its thread). */
typedef struct {
	uint64_t queries, timeouts, mismatched, tcp_retries; /* tries sent, ... */
	uint64_t rcode[MET_RCODES + 1];                      /* matching responses */
	uint64_t lat_bucket[MET_LAT_BUCKETS + 1];            /* send to response, not cumulative */
	uint64_t lat_count, lat_sum_ns;
} fwd_up_stats_t;

typedef struct {
	uint64_t forwarded, answered, servfail, overload, mismatched, tcp_retries;
	uint64_t joined;            /* waited for an identical question another query asked */
	uint64_t stale;             /* answered stale: the client response timer ran out */
	uint64_t prefetches;        /* background refreshes started (fwd_resolve) */
	uint64_t refused_norecurse; /* RD=0 questions not in the cache: REFUSED */
	uint64_t fd_exhausted;      /* a try's UDP socket not opened: EMFILE/ENFILE */
	uint64_t over_share; /* SERVFAIL at once: its source or org held its share of the pool */
	fwd_up_stats_t up[CFG_UPSTREAM_MAX]; /* by index into the conf's upstreams */
	uint64_t inflight;                   /* queries in flight now */
} fwd_stats_t;

/*
 * The answer for the client: the upstream's message with the client's ID, question case
 * and RD restored, cut to max bytes with TC set when larger; or a SERVFAIL. Called
 * exactly once per FWD_PENDING query, always from the loop (never inside fwd_resolve).
 * len == 0: the query was dropped (shutdown); nothing to send.
 */
typedef void (*fwd_done_fn)(void *arg, const uint8_t *resp, size_t len);

/* Allocates *out on loop; conf (and its upstreams) must outlive it. */
int fwd_create(fwd_t **out, uv_loop_t *loop, const fwd_conf_t *conf);
typedef enum {
	FWD_CACHED,   /* answered from the cache: *outlen bytes in out */
	FWD_PENDING,  /* asked upstream: done(arg, ...) will be called, never inside the call */
	FWD_SERVFAIL, /* it cannot go (the in-flight cap, closing): a SERVFAIL in out */
	FWD_REFUSED,  /* RD=0 and not in the cache (as unbound): a REFUSED in out, nothing
	                 asked upstream */
} fwd_result_t;
/*
 * The one call for a query answer.c handed over (ANS_FORWARD): pkt (len bytes) and q,
 * answer.c's parse of it (not parsed again). With the process's cache (conf->cache) a
 * hit is written into out (cap bytes) at once, and a hit late in its TTL is also
 * refreshed in the background; otherwise the query goes upstream. max: the largest
 * answer the client takes (wire_udp_size, or WIRE_TCP_MAX over TCP); tcp: the client
 * came over TCP, so go upstream over TCP. done NULL: the caller has no context left to
 * wait with, so a miss is SERVFAIL. FWD_CACHED and FWD_SERVFAIL set *outlen (0: pkt
 * cannot carry a SERVFAIL); nothing on this path allocates.
 */
fwd_result_t fwd_resolve(fwd_t *f, const uint8_t *pkt, size_t len, const wire_query_t *q,
                         size_t max, bool tcp, uint8_t *out, size_t cap, size_t *outlen,
                         fwd_done_fn done, void *arg);
const fwd_stats_t *fwd_stats(const fwd_t *f);
/* Cancels what is in flight (done(arg, NULL, 0) for each), closes every handle; the
 * loop must run once more to finish closing. Frees f when closed. */
void fwd_close(fwd_t *f);
/* Logs FORWARDER_QUERY / FORWARDER_RESPONSE to dt (the worker's handle; NULL: off). */
void fwd_set_dnstap(fwd_t *f, dt_worker_t *dt);

/*
 * Switches f to conf (a reload: new upstreams or timeouts). conf must stay until the next
 * fwd_set_conf or fwd_close. Connections to upstreams close (their tries go on with the
 * next upstream), back-offs are forgotten. Returns 0, or -EINVAL (f keeps its conf: the
 * caller must keep that one) when f is closing, conf has no upstream, or its max_inflight
 * is not the one f was created with (the pool is fixed).
 */
int fwd_set_conf(fwd_t *f, const fwd_conf_t *conf);

#endif
