/*
 * dnstap — internald's dnstap output (https://dnstap.info): CLIENT_QUERY and
 * CLIENT_RESPONSE for every client message we answer or forward, FORWARDER_QUERY and
 * FORWARDER_RESPONSE for the upstream side, as protobuf dnstap.Dnstap frames in a Frame
 * Streams ("protobuf:dnstap.Dnstap") connection to a unix socket — the format Knot,
 * unbound, BIND and CoreDNS write, read by fstrm_capture, dnstap-ldns, golang-dnstap.
 *
 * One background I/O thread (libfstrm's fstrm_iothr) owns the socket: it connects,
 * writes, and reconnects once a second while no collector listens. Each worker has its
 * own handle (dt_worker_t) with its own input queue and its own pool of fixed frame
 * buffers, so logging from a worker never takes a lock, never blocks and never
 * allocates (but for a frame larger than DT_FRAME_MAX): a message is encoded into a pool
 * buffer and handed to the queue; when the queue or the pool is full — a slow or absent
 * collector — the message is dropped and counted. Only src/dnstap.c includes fstrm.h and the
 * generated protobuf-c header.
 *
 * Threads: dt_create/dt_free on the main thread; each dt_worker_t used by one worker
 * thread only; dt_stats from any thread at any time.
 */
#ifndef INTERNALD_DNSTAP_H
#define INTERNALD_DNSTAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

typedef struct dt dt_t;
typedef struct dt_worker dt_worker_t;

/* The Message.Type values we write (the published schema's numbers). */
typedef enum {
	DT_CLIENT_QUERY = 5,
	DT_CLIENT_RESPONSE = 6,
	DT_FORWARDER_QUERY = 7,
	DT_FORWARDER_RESPONSE = 8,
} dt_type_t;

/*
 * One end of a message: 16 bytes of IPv6 (IPv4 as v4-mapped, as server.c keeps them) and
 * a port. A v4-mapped address is written as socket_family INET with 4 bytes; all-zero
 * address and port 0 mean unknown (the field is left out).
 */
typedef struct {
	uint8_t addr[16];
	uint16_t port;
} dt_end_t;

/*
 * One message. query_from is the initiator of the query (the client; us towards an
 * upstream), response_from the responder (us; the upstream). A time with tv_sec == 0 and
 * a message with len 0 are left out. The bytes are the caller's; dt_log copies them.
 */
/* e from a struct sockaddr_in6 or sockaddr_in (anything else: unknown). */
void dt_end_from_sockaddr(dt_end_t *e, const struct sockaddr *sa);

typedef struct {
	dt_type_t type;
	bool tcp;
	dt_end_t query_from, response_from;
	struct timespec query_time, response_time;
	const uint8_t *query;
	size_t query_len;
	const uint8_t *response;
	size_t response_len;
} dt_msg_t;

typedef struct {
	uint64_t sent;    /* frames handed to the I/O thread */
	uint64_t dropped; /* frames dropped: queue or buffer pool full, or no memory */
} dt_stats_t;

/* The frame a pool buffer holds: any client query or UDP answer (at most 1232 bytes)
 * with its envelope. A larger frame (a TCP answer, an upstream's large EDNS answer) gets a
 * buffer of its own from malloc, the one case that allocates. With DT_QUEUE the pool is
 * 1 MiB per worker, allocated only when dnstap is on. */
#define DT_FRAME_MAX 2048

/* Frames each worker may have in its queue (a power of 2); its pool has twice as many
 * buffers, for the frames the I/O thread holds while it writes them (up to 64). */
#define DT_QUEUE 256

/*
 * Pure: encodes m as one dnstap.Dnstap protobuf (type MESSAGE) into buf (cap bytes).
 * identity and version: the Dnstap fields (NULL: left out). Returns the length, or 0 when
 * it does not fit in cap. Allocates nothing.
 */
size_t dt_encode(const dt_msg_t *m, const char *identity, const char *version, uint8_t *buf,
                 size_t cap);

/*
 * Starts the output to target ("unix:PATH") for nworkers workers: the I/O thread starts
 * now and connects whenever a collector listens at PATH (no collector is not an error).
 * identity, version: copied. Allocates *out (dt_free). Returns 0; -EINVAL with err
 * (err_len bytes) saying what is wrong with target; -ENOMEM; -EIO when libfstrm refuses
 * (err says which step).
 */
int dt_create(dt_t **out, const char *target, unsigned nworkers, const char *identity,
              const char *version, char *err, size_t err_len);

/* Worker idx's handle (idx < nworkers), valid until dt_free. */
dt_worker_t *dt_worker(dt_t *d, unsigned idx);

/*
 * Encodes and queues one message; never blocks. When the frame cannot be queued (queue
 * or pool full, or malloc failed for a large one) it is dropped and counted. w NULL:
 * nothing.
 */
void dt_log(dt_worker_t *w, const dt_msg_t *m);

/* Shorthands for the four kinds. now: the time the message was sent or received (NULL:
 * the clock now); qtime: when the query came (responses; NULL: left out). */
void dt_log_client_query(dt_worker_t *w, bool tcp, const dt_end_t *client, const dt_end_t *server,
                         const uint8_t *msg, size_t len, const struct timespec *now);
void dt_log_client_response(dt_worker_t *w, bool tcp, const dt_end_t *client,
                            const dt_end_t *server, const struct timespec *qtime,
                            const uint8_t *msg, size_t len);
void dt_log_forwarder_query(dt_worker_t *w, bool tcp, const dt_end_t *local,
                            const dt_end_t *upstream, const uint8_t *msg, size_t len,
                            const struct timespec *now);
void dt_log_forwarder_response(dt_worker_t *w, bool tcp, const dt_end_t *local,
                               const dt_end_t *upstream, const struct timespec *qtime,
                               const uint8_t *msg, size_t len);

/* The totals over every worker (each worker's counters are its own; this sums them). */
void dt_stats(const dt_t *d, dt_stats_t *out);
/* The dropped total alone, for metrics (internald_dnstap_dropped_total). d NULL: 0. */
uint64_t dt_dropped(const dt_t *d);

/* Flushes what is queued (if a collector listens), stops the I/O thread, frees d. The
 * workers must have stopped. A collector that does not read within 2 seconds is left
 * behind (a warning; the thread and buffers stay to the exiting process). d NULL: nothing. */
void dt_free(dt_t *d);

#endif
