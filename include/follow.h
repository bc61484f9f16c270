/*
 * follow — internalctl follow: mirrors the fleet's KV bucket into this host's registry
 * (internald(7), FLEET). The registry's second writer: every change goes through
 * reg_write() and jsonl, never around them, and nothing here knows LMDB's key layout.
 *
 * A full sync (no stored position, another bucket or stream identity, or a stored
 * sequence the stream no longer holds) replaces the registry with every key's latest
 * value in ONE transaction; then live batches, each one transaction that also stores
 * the stream sequence, so a restart resumes exactly after the last commit. Values that
 * do not parse or validate are logged (key, sequence, reason), counted and skipped; a
 * change refused by the registry's checks (an org's delete while it has Machines, a
 * record before its org) is also kept and tried again after each batch, until it
 * applies or a later change of its key supersedes it, so that once the stream's last
 * change is applied the registry equals the bucket whatever order it was written in.
 */
#ifndef INTERNALD_FOLLOW_H
#define INTERNALD_FOLLOW_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "registry.h"

typedef struct {
	const kv_opts_t *nats; /* the servers, TLS and credentials */
	const char *bucket;
	size_t batch_max;            /* changes per live transaction (0: 100000) */
	volatile sig_atomic_t *stop; /* set by a signal handler: finish the batch, return */
	const char *js_domain;       /* the JetStream domain of the bucket (NULL: the server's) */
	/* a full sync starts after a random delay of up to this many seconds, so that a
	 * fleet told to sync at once (a new bucket, a fleet's restart) spreads its reads of
	 * the whole stream; 0: the stream's messages / FOLLOW_SPREAD_RATE, at most
	 * FOLLOW_SPREAD_MAX_S; < 0: none */
	double sync_spread_s;
	/* a full sync's wait for its consumer and for each fetch before the stream's end,
	 * one try (0: a follower's patience with a server busy with a fleet's full syncs:
	 * KV_PULL_CREATE_WAIT_MS, and SYNC_FETCH_TRIES fetches of SYNC_FETCH_MS) */
	long wait_ms;
	const char *pending_path; /* where changes kept for later outlive a restart (NULL:
	                             in memory only) */
	struct met_http *http;    /* serve /metrics, /health, /ready there (NULL: none);
	                             follow_run stops it (met_http_stop) before it returns */
	double stale_after;       /* /health: 503 past this many seconds without contact
	                             with NATS, or with the head ahead and nothing applied */
} follow_opts_t;

#define FOLLOW_SPREAD_RATE  20000.0 /* messages per second of delay window */
#define FOLLOW_SPREAD_MAX_S 30.0

typedef struct {
	uint64_t applied; /* changes committed (records and deletes, after deduplication) */
	uint64_t skipped; /* values refused and skipped */
	uint64_t batches, full_syncs;
} follow_stats_t;

/* Runs until *o->stop is set; returns 0 then, or a negative error that makes going on
 * pointless (the registry cannot be written). NATS being unreachable is not an error:
 * the follower waits and retries, the registry stays as it is. stats may be NULL. */
int follow_run(reg_t *reg, const follow_opts_t *o, follow_stats_t *stats);

/* Called with every message a full sync reads (each key's latest value or delete
 * marker, in stream order; a sync tried again reads them again). */
typedef void (*follow_seen_fn)(void *arg, const kv_msg_t *m);

/* One full sync of bucket b (named bucket) into reg, then returns (internalctl publish
 * mirrors the bucket into a scratch registry to validate against it, and sees the raw
 * values through seen, which may be NULL). wait_ms as follow_opts_t's: publish waits its
 * --ack-wait, and tries again through the next server, not minutes for a node that died. */
int follow_mirror(reg_t *reg, kv_bucket_t *b, const char *bucket, long wait_ms, follow_seen_fn seen,
                  void *seen_arg, follow_stats_t *stats);

#endif
