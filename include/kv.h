/*
 * kv — the fleet's NATS JetStream key-value bucket, as publish and follow need it.
 *
 * The only file that includes <nats/nats.h> is src/kv.c. A bucket NAME is the JetStream
 * stream KV_NAME whose subjects are $KV.NAME.<key>; a put is a message with the value as
 * its data, a delete or purge a message with the header KV-Operation: DEL or PURGE. The
 * stream sequence of a message is the position a follower stores.
 *
 * Errors: 0 or a negative code: -ENOENT (no such bucket), -ENOTCONN (NATS unreachable
 * now), -ETIMEDOUT, -EIO (any other NATS failure; kv_strerror says which), -EREMOTEIO
 * (kv_flush: the server refused a write itself, e.g. a value past the bucket's size
 * limit; sending it again gets the same answer; kv_strerror says which and why), -ENOMEM,
 * -EINVAL. Nothing here retries on its own except the connection itself.
 */
#ifndef INTERNALD_KV_H
#define INTERNALD_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kv_conn kv_conn_t;
typedef struct kv_bucket kv_bucket_t;
typedef struct kv_sub kv_sub_t;

/* The text of the last NATS failure of this thread (after -EIO or -EREMOTEIO), or of err. */
const char *kv_strerror(int err);

/*
 * Connects to the first reachable of urls[0..n) (each "nats://host:port", a comma list
 * is fine too). forever: never give up — a connection that cannot be made now goes on
 * being tried in the background with back-off, and a lost one is re-established
 * (followers); otherwise fail within about two seconds (publish). Every change of the
 * connection's state is logged as one line "kv: nats=<state> url=<url>". Allocates *out
 * (kv_close).
 */
int kv_connect(kv_conn_t **out, const char *const *urls, size_t n, bool forever);
bool kv_connected(kv_conn_t *c);
void kv_close(kv_conn_t *c);
/* The JetStream domain every bucket opened on c after this call is looked up in
 * (NULL or "": the domain of the server connected to). A fleet's region runs a leaf
 * node with a JetStream domain of its own holding a mirror of the hub's bucket; a
 * client connected elsewhere reaches that mirror with its domain. -EINVAL if longer
 * than 63 bytes or not a plain name. */
int kv_set_domain(kv_conn_t *c, const char *domain);

/* Looks the bucket up; replicas > 0: creates it with that many replicas if missing
 * (history 1, file storage). ack_wait_ms (0: KV_ACK_WAIT_MS) bounds each wait for the
 * server's acknowledgements of asynchronous writes: for room when as many are pending
 * as the client holds, and kv_flush's for the last ones. Allocates *out
 * (kv_bucket_close). -ENOENT when missing. */
#define KV_ACK_WAIT_MS 30000
int kv_bucket_open(kv_conn_t *c, const char *name, int replicas, long ack_wait_ms,
                   kv_bucket_t **out);
void kv_bucket_close(kv_bucket_t *b);
/*
 * Creates bucket name, in the domain of c (kv_set_domain), as a mirror of the bucket of
 * the same name in JetStream domain from (the hub): the stream KV_<name> with no
 * subjects of its own, fed by the server from the hub over the leaf node connection
 * and keeping the hub's stream sequences. Idempotent: 0 when it exists as such a
 * mirror already; -EIO when a bucket of that name exists and is not (kv_strerror
 * says what it is). replicas: 1 to 5, within the domain.
 */
int kv_mirror_create(kv_conn_t *c, const char *name, const char *from, int replicas);
/* Deletes the bucket and everything in it (tests, operators). -ENOENT when missing. */
int kv_bucket_delete(kv_conn_t *c, const char *name);

typedef struct {
	char id[32];    /* the stream's identity: its creation time, ns since the epoch */
	uint64_t first; /* first and last stream sequence held (0 0 when never written) */
	uint64_t last;
	uint64_t msgs; /* messages held (values and delete markers) */
	/* a mirror (a region's copy of the hub's bucket): the identity of the stream it
	 * mirrors, whose sequences it keeps, so that a position in one mirror is one in
	 * every mirror of the same stream; "" when the stream is no mirror, or the stream
	 * it mirrors did not answer when the bucket was opened (looked up once per
	 * kv_bucket_open, so it does not change under a caller) */
	char origin[32];
} kv_info_t;
int kv_info(kv_bucket_t *b, kv_info_t *out);

/* Asynchronous put / delete marker: returns once sent; kv_flush waits for every
 * acknowledgement and returns -EREMOTEIO if the server refused a write, -EIO if an
 * answer said it was lost (kv_strerror names the first such write's key and the reason),
 * -ETIMEDOUT if some never came. */
int kv_put(kv_bucket_t *b, const char *key, const char *value, size_t len);
int kv_delete(kv_bucket_t *b, const char *key);
int kv_flush(kv_bucket_t *b);
/* Puts and deletes the server has acknowledged (stored) since kv_bucket_open. */
void kv_acked(kv_bucket_t *b, uint64_t *puts, uint64_t *deletes);

enum kv_op { KV_PUT, KV_DELETE, KV_PURGE };
typedef struct {
	const char *key;   /* NUL-terminated */
	const char *value; /* len bytes (not NUL-terminated); len 0 for deletes */
	size_t len;
	int op;
	uint64_t seq;     /* stream sequence */
	uint64_t pending; /* messages the server still has for this consumer after this one */
} kv_msg_t;

/*
 * An ordered consumer of the bucket's keys matching filter (NULL: every key): from
 * stream sequence start_seq, or with start_seq 0 the latest message of every key, then
 * every later one. No acknowledgements; the library re-creates the consumer at the
 * right place after a gap or a reconnect. Allocates *out (kv_sub_close).
 */
int kv_sub_open(kv_bucket_t *b, const char *filter, uint64_t start_seq, kv_sub_t **out);
/* A reader of the whole stream from start_seq (0 or 1: from the first message held),
 * which fetches batches of messages when asked for one (memory bounded by a batch, never
 * by the stream: a full sync). kv_sub_next and kv_sub_close as for kv_sub_open. */
int kv_sub_open_pull(kv_bucket_t *b, uint64_t start_seq, kv_sub_t **out);
/* The next message within timeout_ms (0: only one already received). m is valid until
 * the next call or kv_sub_close. -ETIMEDOUT when none came. */
int kv_sub_next(kv_sub_t *s, int timeout_ms, kv_msg_t *m);
/* Messages already received and waiting in the client. */
uint64_t kv_sub_queued(kv_sub_t *s);
void kv_sub_close(kv_sub_t *s);

#endif
