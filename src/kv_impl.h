/*
 * kv_impl.h — private to kv.c (connection, bucket, mirrors, writes) and kv_read.c (the
 * consumers a follower reads with, point reads): the handles' insides and the error
 * helpers both use. Like them, the only place besides that includes a NATS header.
 */
#ifndef INTERNALD_KV_IMPL_H
#define INTERNALD_KV_IMPL_H

#include "kv.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct kv_conn {
	natsConnection *nc;
	natsOptions *opts;
	/* kv_close: the disconnection it causes is not news, and c is freed only once the
	 * library has called its last callback (closed), which may run on its own thread */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool closing, closed;
	char domain[64];     /* kv_set_domain: the JetStream domain buckets are opened in */
	char denied[256];    /* the server's last permissions violation ("" none) */
	char gave_up[256];   /* why the library closed the connection for good ("" open) */
	uint64_t reconnects; /* atomic: connections re-established */
};

struct kv_bucket {
	kv_conn_t *c;
	jsCtx *js;
	char name[64];
	char stream[72];        /* KV_<name> */
	char prefix[80];        /* $KV.<name>. */
	pthread_mutex_t mutex;  /* guards the rest (the ack handler runs on NATS's thread) */
	int failed;             /* asynchronous writes refused since the last kv_flush */
	bool refused;           /* the first of them was the server's answer, not a lost ack */
	char error[256];        /* the first of them, for the caller's kv_strerror */
	uint64_t puts, deletes; /* acknowledged since kv_bucket_open */
	long ack_wait_ms;
	struct kv_bucket *left_next; /* on the list of buckets left to late answers */
	char origin[32];             /* a mirror's origin's identity (kv_info_t), once asked */
	bool origin_asked;
};

/* Maps a NATS status to our codes, keeping its text (what: the step) for kv_strerror. */
int kv_fail(natsStatus s, const char *what);
/* Sets the text kv_strerror gives for this thread's next error. */
void kv_set_error(const char *text);
/* The subject of key in bucket b into buf[cap]; -ENAMETOOLONG when it does not fit. */
int kv_subject(kv_bucket_t *b, const char *key, char *buf, size_t cap);

#endif
