/*
 * kv — the fleet's NATS JetStream key-value bucket, as publish and follow need it.
 *
 * The only files that include <nats/nats.h> are src/kv.c, src/kv_read.c and src/kv_impl.h. A bucket
 * NAME is the JetStream stream KV_NAME whose subjects are $KV.NAME.<key>; a put is a message with
 * the value as its data, a delete or purge a message with the header KV-Operation: DEL or PURGE.
 * The stream sequence of a message is the position a follower stores.
 *
 * Errors: 0 or a negative code: -ENOENT (no such bucket), -ENOTCONN (NATS unreachable
 * now), -ETIMEDOUT, -EIO (any other NATS failure; kv_strerror says which), -EREMOTEIO
 * (kv_flush: the server refused a write itself, e.g. a value past the bucket's size
 * limit; sending it again gets the same answer; kv_strerror says which and why), -ENOMEM,
 * -EINVAL, -EACCES (kv_flush: NATS refused this user the publish). Nothing here retries
 * on its own except the connection itself.
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
 * How to reach NATS and who to be there. Every member but urls may be NULL. Secrets are
 * read from files (never taken as strings, so they are in no argument list) when
 * kv_connect_opts runs; the client library keeps its copy, ours is wiped.
 */
typedef struct {
	const char *const *urls; /* "nats://host:port" or "tls://host:port"; userinfo allowed */
	size_t nurls;
	const char *tls_ca;   /* PEM file of the CAs that sign the servers' certificates */
	const char *tls_cert; /* PEM client certificate (chain) and its key: mutual TLS */
	const char *tls_key;
	const char *user;          /* with password_file */
	const char *password_file; /* the password, one line */
	const char *token_file;    /* an authorization token, one line */
	const char *creds;         /* a .creds file: user JWT and nkey seed */
	const char *nkey; /* an nkey seed file (the "SU..." seed, as nk -gen user writes) */
} kv_opts_t;

/*
 * Connects to the first reachable of o->urls[0..nurls) (in that order when !forever;
 * followers take them in the library's random order, which spreads a fleet). TLS is on when a URL
 * says tls:// or o->tls_ca or o->tls_cert is set, and the server's certificate is always verified
 * (against tls_ca, else the system's CAs), host name included. forever: never give up — a
 * connection that cannot be made now goes on being tried in the background with back-off, and a
 * lost one is re-established (followers); otherwise fail within about two seconds (publish). Every
 * change of the connection's state is logged as one line "kv: nats=<state> url=<url>", the URL
 * without its userinfo; no text this module logs or returns holds a password or token. A server's
 * asynchronous error (a permissions violation) is logged once per distinct text. -EINVAL when a
 * file cannot be read or the options contradict (kv_strerror says which); forever: -EACCES when
 * a server refuses the credentials (one attempt in the foreground first: kv_strerror gives the
 * server's reason, which libnats' background attempts lose). Allocates *out
 * (kv_close).
 */
int kv_connect_opts(kv_conn_t **out, const kv_opts_t *o, bool forever);
/* kv_connect_opts with urls only. */
int kv_connect(kv_conn_t **out, const char *const *urls, size_t n, bool forever);
/* url without its userinfo ("nats://u:p@h:1" -> "nats://h:1") into buf[cap]. */
const char *kv_url_public(const char *url, char *buf, size_t cap);
/* Whether NATS has refused this connection a publish or subscribe since it was made
 * (the server's "Permissions Violation"); its text into buf when so. */
bool kv_denied(kv_conn_t *c, char *buf, size_t cap);
/* Whether the client library has closed this connection for good, not by kv_close: a
 * server refused its credentials twice in a row ("Authorization Violation"), or, at the
 * first connection, a handshake failed (libnats then drops the server); it never tries
 * again. The reason into buf when so. A follower cannot go on with it. */
bool kv_gave_up(kv_conn_t *c, char *buf, size_t cap);
/* Both safe from any thread. */
bool kv_connected(kv_conn_t *c);
uint64_t kv_reconnects(kv_conn_t *c); /* connections lost and re-established */
void kv_close(kv_conn_t *c);
/* True if s is a JetStream bucket or domain name NATS takes as one subject token: 1 to
 * max letters, digits, '-' and '_'. */
bool kv_name_valid(const char *s, size_t max);

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
 * -EACCES if some never came and NATS denied this user the publish, -ETIMEDOUT if some
 * never came otherwise. */
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

/* The latest message of key, one request (O(1) in the bucket's size): *op KV_PUT with a
 * copy of its value in *value[0..*len) (NUL-terminated, the caller's to free), or
 * KV_DELETE / KV_PURGE (a delete marker, *len 0). -ENOENT when the stream holds nothing
 * under key; other errors as kv_info's. */
int kv_get(kv_bucket_t *b, const char *key, int *op, char **value, size_t *len);

/*
 * An ordered consumer of the bucket's keys matching filter (NULL: every key): from
 * stream sequence start_seq, or with start_seq 0 the latest message of every key, then
 * every later one. No acknowledgements; the library re-creates the consumer at the
 * right place after a gap or a reconnect. Allocates *out (kv_sub_close).
 */
int kv_sub_open(kv_bucket_t *b, const char *filter, uint64_t start_seq, kv_sub_t **out);
/* A reader of the whole stream from start_seq (0 or 1: from the first message held),
 * which fetches batches of messages when asked for one (memory bounded by a batch, never
 * by the stream: a full sync). wait_ms bounds the wait for the server to create its
 * consumer (0: KV_PULL_CREATE_WAIT_MS, a follower's patience with a server busy with a
 * fleet's full syncs). kv_sub_next and kv_sub_close as for kv_sub_open. */
#define KV_PULL_CREATE_WAIT_MS 120000
int kv_sub_open_pull(kv_bucket_t *b, uint64_t start_seq, long wait_ms, kv_sub_t **out);
/* A follower far behind: the messages from start_seq are fetched a bounded batch at a
 * time (as kv_sub_open_pull's: the client holds at most one fetch, not what an ordered
 * consumer's server pushes ahead, tens of MiB) until the server says none is left, then
 * followed by an ordered consumer as kv_sub_open's, from the message after the last one
 * handed out. A message lost in transit while fetching is an error (-EIO), never a gap;
 * kv_sub_queued counts the messages the server said wait too. */
int kv_sub_open_catchup(kv_bucket_t *b, uint64_t start_seq, kv_sub_t **out);
/* The next message within timeout_ms (0: only one already received). m is valid until
 * the next call or kv_sub_close. -ETIMEDOUT when none came. */
int kv_sub_next(kv_sub_t *s, int timeout_ms, kv_msg_t *m);
/* Messages already received and waiting in the client (see kv_sub_open_catchup). */
uint64_t kv_sub_queued(kv_sub_t *s);
void kv_sub_close(kv_sub_t *s);

#endif
