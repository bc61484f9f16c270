/*
 * publish — internalctl publish: a JSON Lines file into the fleet's KV bucket.
 *
 * The file is validated whole as import validates it, against the bucket's content
 * (mirrored into a scratch registry, or a follower's registry at the bucket's head: db),
 * before anything is written: refused input writes
 * nothing. Then every record is put under its key (kvkey.h), every "op":"delete" record
 * becomes a KV delete, a Machine the bucket holds under another org has that old key
 * deleted, and with replace every key the file lacks is deleted too (each key once). Order:
 * orgs and regions, then deletes, then the other records (in file order, but each
 * Machine or peer after the record that holds its address in the bucket), so that a
 * follower applying them in separate batches never meets a record before its org, nor an
 * address still held.
 */
#ifndef INTERNALD_PUBLISH_H
#define INTERNALD_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>

#include "kv.h"

typedef struct {
	const kv_opts_t *nats; /* the servers, TLS and credentials */
	const char *bucket;
	int replicas;     /* when the bucket must be created */
	long ack_wait_ms; /* each wait for the server's acknowledgements (0: 30 s) */
	bool replace;     /* the file becomes the bucket's whole content */
	const char *file; /* "-": standard input */
	/* a registry a follower of the bucket keeps (NULL: none): once it has applied the
	 * bucket's head (waited for up to ack_wait_ms), the file is validated against it and
	 * the bucket read only under the file's keys; else (or with replace) the whole
	 * bucket is read, as without it */
	const char *db;
} publish_opts_t;

/* Prints what it did (or why it refused) to stderr. 0, -EINVAL (refused input: nothing
 * was written), or another negative error (NATS, I/O). */
int publish_run(const publish_opts_t *o);

#endif
