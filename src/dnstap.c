/*
 * dnstap.c — the one file that speaks libfstrm and protobuf-c (include/dnstap.h).
 *
 * Encoding is pure (dt_encode): a Dnstap and a Message on the stack whose byte fields
 * point at the caller's bytes, packed straight into a frame buffer. Each worker owns a
 * pool of DT_FRAME_MAX buffers and a ring of the free ones: the worker takes from the
 * ring, the I/O thread's free callback gives back — one producer, one consumer, so two
 * counters with acquire/release order suffice (no lock; on x86 the worker's side is plain
 * loads and stores). A buffer is taken from the ring only once fstrm has accepted the
 * frame, so a refused frame needs no giving back. It must never block a worker, nor log
 * per message.
 */
#include "dnstap.h"

#include <errno.h>
#include <fstrm.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "dnstap.pb-c.h"
#include "log.h"

#define CONTENT_TYPE "protobuf:dnstap.Dnstap"
#define POOL         (2 * DT_QUEUE) /* a power of 2: the ring's mask */
#define DESTROY_WAIT 2              /* seconds dt_free waits for the last flush */

struct dt_worker {
	dt_t *d;
	struct fstrm_iothr_queue *q;
	uint8_t *bufs;                  /* POOL buffers of DT_FRAME_MAX bytes */
	uint16_t ring[POOL];            /* indexes of free buffers, from head to tail */
	_Atomic uint64_t head;          /* written by the worker */
	_Atomic uint64_t tail;          /* written by the I/O thread */
	_Atomic uint64_t sent, dropped; /* written by the worker only, read by dt_stats */
};

struct dt {
	struct fstrm_iothr *iothr;
	unsigned n;
	dt_worker_t *w;
	char identity[256], version[64];
};

/* ---- encoding ------------------------------------------------------------------------------ */

static const uint8_t v4mapped[12] = {[10] = 0xff, [11] = 0xff};
static const uint8_t zero16[16];

static bool is_v4(const dt_end_t *e)
{
	return memcmp(e->addr, v4mapped, 12) == 0;
}

static bool is_known(const dt_end_t *e)
{
	return e->port || memcmp(e->addr, zero16, 16) != 0;
}

void dt_end_from_sockaddr(dt_end_t *e, const struct sockaddr *sa)
{
	memset(e, 0, sizeof(*e));
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)sa;
		memcpy(e->addr, &a->sin6_addr, 16);
		e->port = ntohs(a->sin6_port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)sa;
		memcpy(e->addr, v4mapped, 12);
		memcpy(e->addr + 12, &a->sin_addr, 4);
		e->port = ntohs(a->sin_port);
	}
}

static void set_end(const dt_end_t *e, protobuf_c_boolean *has_addr, ProtobufCBinaryData *addr,
                    protobuf_c_boolean *has_port, uint32_t *port)
{
	if (!is_known(e))
		return;
	*has_addr = true;
	addr->data = (uint8_t *)(is_v4(e) ? e->addr + 12 : e->addr);
	addr->len = is_v4(e) ? 4 : 16;
	*has_port = true;
	*port = e->port;
}

size_t dt_encode(const dt_msg_t *m, const char *identity, const char *version, uint8_t *buf,
                 size_t cap)
{
	Dnstap__Message msg = DNSTAP__MESSAGE__INIT;
	Dnstap__Dnstap top = DNSTAP__DNSTAP__INIT;
	msg.type = (Dnstap__Message__Type)m->type;
	const dt_end_t *any = is_known(&m->query_from) ? &m->query_from : &m->response_from;
	if (is_known(any)) {
		msg.has_socket_family = true;
		msg.socket_family =
		        is_v4(any) ? DNSTAP__SOCKET_FAMILY__INET : DNSTAP__SOCKET_FAMILY__INET6;
	}
	msg.has_socket_protocol = true;
	msg.socket_protocol = m->tcp ? DNSTAP__SOCKET_PROTOCOL__TCP : DNSTAP__SOCKET_PROTOCOL__UDP;
	set_end(&m->query_from, &msg.has_query_address, &msg.query_address, &msg.has_query_port,
	        &msg.query_port);
	set_end(&m->response_from, &msg.has_response_address, &msg.response_address,
	        &msg.has_response_port, &msg.response_port);
	if (m->query_time.tv_sec) {
		msg.has_query_time_sec = msg.has_query_time_nsec = true;
		msg.query_time_sec = (uint64_t)m->query_time.tv_sec;
		msg.query_time_nsec = (uint32_t)m->query_time.tv_nsec;
	}
	if (m->response_time.tv_sec) {
		msg.has_response_time_sec = msg.has_response_time_nsec = true;
		msg.response_time_sec = (uint64_t)m->response_time.tv_sec;
		msg.response_time_nsec = (uint32_t)m->response_time.tv_nsec;
	}
	if (m->query_len) {
		msg.has_query_message = true;
		msg.query_message = (ProtobufCBinaryData){m->query_len, (uint8_t *)m->query};
	}
	if (m->response_len) {
		msg.has_response_message = true;
		msg.response_message =
		        (ProtobufCBinaryData){m->response_len, (uint8_t *)m->response};
	}
	if (identity) {
		top.has_identity = true;
		top.identity = (ProtobufCBinaryData){strlen(identity), (uint8_t *)identity};
	}
	if (version) {
		top.has_version = true;
		top.version = (ProtobufCBinaryData){strlen(version), (uint8_t *)version};
	}
	top.type = DNSTAP__DNSTAP__TYPE__MESSAGE;
	top.message = &msg;
	size_t len = dnstap__dnstap__get_packed_size(&top);
	if (len > cap)
		return 0;
	return dnstap__dnstap__pack(&top, buf);
}

/* ---- the per-worker pool ------------------------------------------------------------------- */

/* fstrm's free callback, on the I/O thread: the buffer goes back to its worker's ring. */
static void give_back(void *buf, void *arg)
{
	dt_worker_t *w = arg;
	size_t idx = (size_t)((uint8_t *)buf - w->bufs) / DT_FRAME_MAX;
	uint64_t t = atomic_load_explicit(&w->tail, memory_order_relaxed);
	/* The slot is free: every buffer but this one may be in the ring, so the worker has
	 * taken the slot's last occupant. Reading head (acquire) is what orders its read of
	 * that slot before this write; it never waits in practice. */
	while (t - atomic_load_explicit(&w->head, memory_order_acquire) >= POOL)
		sched_yield();
	w->ring[t & (POOL - 1)] = (uint16_t)idx;
	atomic_store_explicit(&w->tail, t + 1, memory_order_release);
}

/* A counter only its worker writes: a plain load and store, no locked instruction. */
static void bump(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

static void submit_large(dt_worker_t *w, const dt_msg_t *m)
{
	dt_t *d = w->d;
	size_t cap =
	        512 + strlen(d->identity) + strlen(d->version) + m->query_len + m->response_len;
	uint8_t *big = malloc(cap);
	size_t len = big ? dt_encode(m, d->identity, d->version, big, cap) : 0;
	if (!len || fstrm_iothr_submit(d->iothr, w->q, big, len, fstrm_free_wrapper, NULL) !=
	                    fstrm_res_success) {
		free(big);
		bump(&w->dropped);
		return;
	}
	bump(&w->sent);
}

void dt_log(dt_worker_t *w, const dt_msg_t *m)
{
	if (!w)
		return;
	dt_t *d = w->d;
	uint64_t h = atomic_load_explicit(&w->head, memory_order_relaxed);
	if (h == atomic_load_explicit(&w->tail, memory_order_acquire)) {
		bump(&w->dropped); /* every buffer is queued or being written */
		return;
	}
	uint8_t *buf = w->bufs + (size_t)w->ring[h & (POOL - 1)] * DT_FRAME_MAX;
	size_t len = dt_encode(m, d->identity, d->version, buf, DT_FRAME_MAX);
	if (!len) {
		submit_large(w, m);
		return;
	}
	if (fstrm_iothr_submit(d->iothr, w->q, buf, len, give_back, w) != fstrm_res_success) {
		bump(&w->dropped); /* the queue is full: the buffer stays ours */
		return;
	}
	atomic_store_explicit(&w->head, h + 1, memory_order_release);
	bump(&w->sent);
}

static struct timespec now_or(const struct timespec *t)
{
	struct timespec ts;
	if (t)
		return *t;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

/* A query as it left its sender (from = who asked, to = who is asked). */
static void log_query(dt_worker_t *w, dt_type_t type, bool tcp, const dt_end_t *from,
                      const dt_end_t *to, const uint8_t *msg, size_t len,
                      const struct timespec *now)
{
	if (!w)
		return;
	dt_msg_t m = {.type = type,
	              .tcp = tcp,
	              .query_from = *from,
	              .response_from = *to,
	              .query_time = now_or(now),
	              .query = msg,
	              .query_len = len};
	dt_log(w, &m);
}

/* A response to the query that from sent to: qtime, when known, is when it was asked. */
static void log_response(dt_worker_t *w, dt_type_t type, bool tcp, const dt_end_t *from,
                         const dt_end_t *to, const struct timespec *qtime, const uint8_t *msg,
                         size_t len)
{
	if (!w)
		return;
	dt_msg_t m = {.type = type,
	              .tcp = tcp,
	              .query_from = *from,
	              .response_from = *to,
	              .response_time = now_or(NULL),
	              .response = msg,
	              .response_len = len};
	if (qtime)
		m.query_time = *qtime;
	dt_log(w, &m);
}

void dt_log_client_query(dt_worker_t *w, bool tcp, const dt_end_t *client, const dt_end_t *server,
                         const uint8_t *msg, size_t len, const struct timespec *now)
{
	log_query(w, DT_CLIENT_QUERY, tcp, client, server, msg, len, now);
}

void dt_log_client_response(dt_worker_t *w, bool tcp, const dt_end_t *client,
                            const dt_end_t *server, const struct timespec *qtime,
                            const uint8_t *msg, size_t len)
{
	log_response(w, DT_CLIENT_RESPONSE, tcp, client, server, qtime, msg, len);
}

void dt_log_forwarder_query(dt_worker_t *w, bool tcp, const dt_end_t *local,
                            const dt_end_t *upstream, const uint8_t *msg, size_t len,
                            const struct timespec *now)
{
	log_query(w, DT_FORWARDER_QUERY, tcp, local, upstream, msg, len, now);
}

void dt_log_forwarder_response(dt_worker_t *w, bool tcp, const dt_end_t *local,
                               const dt_end_t *upstream, const struct timespec *qtime,
                               const uint8_t *msg, size_t len)
{
	log_response(w, DT_FORWARDER_RESPONSE, tcp, local, upstream, qtime, msg, len);
}

/* ---- the writer ------------------------------------------------------------------------------ */

int dt_create(dt_t **out, const char *target, unsigned nworkers, const char *identity,
              const char *version, char *err, size_t err_len)
{
	struct sockaddr_un sun;
	if (strncmp(target, "unix:", 5) != 0 || !target[5]) {
		snprintf(err, err_len, "dnstap target '%s': want unix:PATH", target);
		return -EINVAL;
	}
	if (strlen(target + 5) >= sizeof(sun.sun_path)) {
		snprintf(err, err_len, "dnstap socket path '%s' is longer than %zu bytes",
		         target + 5, sizeof(sun.sun_path) - 1);
		return -EINVAL;
	}
	if (nworkers == 0) {
		snprintf(err, err_len, "dnstap: no workers");
		return -EINVAL;
	}
	dt_t *d = calloc(1, sizeof(*d));
	struct fstrm_writer_options *wopt = fstrm_writer_options_init();
	struct fstrm_unix_writer_options *uopt = fstrm_unix_writer_options_init();
	struct fstrm_iothr_options *iopt = fstrm_iothr_options_init();
	struct fstrm_writer *writer = NULL;
	const char *step = "options";
	int rc = -ENOMEM;
	if (!d || !wopt || !uopt || !iopt || !(d->w = calloc(nworkers, sizeof(*d->w))))
		goto fail;
	d->n = nworkers;
	snprintf(d->identity, sizeof(d->identity), "%s", identity ? identity : "");
	snprintf(d->version, sizeof(d->version), "%s", version ? version : "");
	for (unsigned i = 0; i < nworkers; i++) {
		dt_worker_t *w = &d->w[i];
		w->d = d;
		if (!(w->bufs = malloc((size_t)POOL * DT_FRAME_MAX)))
			goto fail;
		for (unsigned k = 0; k < POOL; k++)
			w->ring[k] = (uint16_t)k;
		atomic_init(&w->head, 0);
		atomic_init(&w->tail, POOL);
		atomic_init(&w->sent, 0);
		atomic_init(&w->dropped, 0);
	}
	rc = -EIO;
	if (fstrm_writer_options_add_content_type(wopt, CONTENT_TYPE, strlen(CONTENT_TYPE)) !=
	    fstrm_res_success)
		goto fail;
	fstrm_unix_writer_options_set_socket_path(uopt, target + 5);
	step = "unix writer";
	if (!(writer = fstrm_unix_writer_init(uopt, wopt)))
		goto fail;
	step = "I/O thread options";
	if (fstrm_iothr_options_set_num_input_queues(iopt, nworkers) != fstrm_res_success ||
	    fstrm_iothr_options_set_input_queue_size(iopt, DT_QUEUE) != fstrm_res_success ||
	    fstrm_iothr_options_set_queue_model(iopt, FSTRM_IOTHR_QUEUE_MODEL_SPSC) !=
	            fstrm_res_success ||
	    fstrm_iothr_options_set_reopen_interval(iopt, 1) != fstrm_res_success)
		goto fail;
	step = "I/O thread";
	if (!(d->iothr = fstrm_iothr_init(iopt, &writer)))
		goto fail;
	step = "input queue";
	for (unsigned i = 0; i < nworkers; i++)
		if (!(d->w[i].q = fstrm_iothr_get_input_queue_idx(d->iothr, i)))
			goto fail;
	fstrm_iothr_options_destroy(&iopt);
	fstrm_unix_writer_options_destroy(&uopt);
	fstrm_writer_options_destroy(&wopt);
	*out = d;
	return 0;
fail:
	if (rc == -ENOMEM)
		snprintf(err, err_len, "dnstap: out of memory");
	else
		snprintf(err, err_len, "dnstap %s: libfstrm refused the %s", target, step);
	if (writer)
		fstrm_writer_destroy(&writer);
	if (iopt)
		fstrm_iothr_options_destroy(&iopt);
	if (uopt)
		fstrm_unix_writer_options_destroy(&uopt);
	if (wopt)
		fstrm_writer_options_destroy(&wopt);
	dt_free(d);
	return rc;
}

dt_worker_t *dt_worker(dt_t *d, unsigned idx)
{
	return d && idx < d->n ? &d->w[idx] : NULL;
}

void dt_stats(const dt_t *d, dt_stats_t *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; d && i < d->n; i++) {
		out->sent += atomic_load_explicit(&d->w[i].sent, memory_order_relaxed);
		out->dropped += atomic_load_explicit(&d->w[i].dropped, memory_order_relaxed);
	}
}

uint64_t dt_dropped(const dt_t *d)
{
	dt_stats_t st;
	dt_stats(d, &st);
	return st.dropped;
}

static dt_t *left_behind;

static void *destroy_main(void *arg)
{
	dt_t *d = arg;
	fstrm_iothr_destroy(&d->iothr); /* flushes, gives back every frame still queued */
	return NULL;
}

void dt_free(dt_t *d)
{
	if (!d)
		return;
	if (d->iothr) {
		/* The I/O thread flushes to the collector with blocking writes: a collector that
		 * has stopped reading would hold our exit forever. Give it DESTROY_WAIT seconds;
		 * after that leave the thread and its buffers to the exiting process. */
		pthread_t t;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += DESTROY_WAIT;
		if (pthread_create(&t, NULL, destroy_main, d) != 0) {
			destroy_main(d);
		} else if (pthread_timedjoin_np(t, NULL, &until) != 0) {
			pthread_detach(t);
			left_behind = d; /* still in use by that thread: not a leak */
			log_warn("event=dnstap status=unflushed reason=\"the collector is not "
			         "reading\"");
			return;
		}
	}
	for (unsigned i = 0; d->w && i < d->n; i++)
		free(d->w[i].bufs);
	free(d->w);
	free(d);
}
