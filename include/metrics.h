/*
 * metrics — internald's counters and their Prometheus text exposition (format 0.0.4).
 *
 * Pure: structs of numbers in, text out. It never touches a socket, a thread or a file;
 * src/metrics_http.c (include/metrics_http.h) serves the text and server.c fills the
 * structs by summing its workers' counters.
 *
 * The counters a worker bumps on its hot path live in its own met_worker_t, written by
 * that worker only with MET_ADD (a relaxed store of the old value plus n: no lock, no
 * locked read-modify-write); a scrape reads them from another thread with MET_LOAD and
 * sums them.
 */
#ifndef INTERNALD_METRICS_H
#define INTERNALD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "answer.h"
#include "config.h"

#define MET_ADD(x, n) __atomic_store_n(&(x), (x) + (n), __ATOMIC_RELAXED)
#define MET_INC(x)    MET_ADD(x, 1)
#define MET_LOAD(x)   __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* Labels of the families; the arrays below are indexed by these. */
enum { MET_UDP, MET_TCP, MET_TRANSPORTS };
enum { MET_IPV4, MET_IPV6, MET_FAMILIES };
#define MET_RCODES 24 /* header rcode | extended bits (BADVERS = 16); more: "other" */
enum {
	MET_FORM_APEX,
	MET_FORM_APP,
	MET_FORM_REGION,
	MET_FORM_GROUP,
	MET_FORM_VM,
	MET_FORM_NEAREST,
	MET_FORM_METADATA,
	MET_FORM_VMS,
	MET_FORM_REGIONS,
	MET_FORM_APPS,
	MET_FORM_PEERS,
	MET_FORM_PEER,
	MET_FORM_INSTANCES,
	MET_FORM_FLYCAST,
	MET_FORM_PTR,
	MET_FORM_OTHER, /* a name in our zones with no form (NXDOMAIN), empty non-terminals */
	MET_FORMS
};
enum {
	MET_REFUSED_OTHER_ORG,   /* sent to another org's resolver address */
	MET_REFUSED_NOT_ALLOWED, /* source outside the allow list */
	MET_REFUSED_CLASS,       /* class other than IN */
	MET_REFUSED_TRANSFER,    /* AXFR / IXFR */
	MET_REFUSED_NO_ORG,      /* .internal asked from an allowed source of no org */
	MET_REFUSED_NO_UPSTREAM, /* a name outside our zones and nothing to forward to */
	MET_REFUSED_REASONS
};
enum {
	MET_DROP_SHORT,       /* fewer than 12 bytes */
	MET_DROP_QR,          /* QR set: a response, not a query */
	MET_DROP_UNPARSEABLE, /* a question we cannot even echo */
	MET_DROP_OVERSIZE,    /* a datagram larger than any query */
	MET_DROP_REASONS
};
#define MET_LAT_BUCKETS 12 /* forwarding latency: 0.5 ms .. 2.5 s, then +Inf */
extern const double met_lat_bounds[MET_LAT_BUCKETS]; /* seconds */
#define MET_DUR_BUCKETS 14 /* internald's own answers: 10 us .. 250 ms, then +Inf */
extern const uint64_t met_dur_bounds_ns[MET_DUR_BUCKETS];
/* QTYPEs counted by name; every other type is "other". */
enum {
	MET_QTYPE_A,
	MET_QTYPE_AAAA,
	MET_QTYPE_TXT,
	MET_QTYPE_PTR,
	MET_QTYPE_SOA,
	MET_QTYPE_NS,
	MET_QTYPE_SRV,
	MET_QTYPE_ANY,
	MET_QTYPE_OTHER,
	MET_QTYPES
};

/* One worker's counters: written only by that worker (MET_ADD), read by the scrape. */
typedef struct {
	uint64_t queries[MET_TRANSPORTS][MET_FAMILIES];
	uint64_t rcode[MET_RCODES + 1];
	uint64_t form[MET_FORMS];
	uint64_t truncated;
	uint64_t refused[MET_REFUSED_REASONS];
	uint64_t dropped[MET_DROP_REASONS];
	uint64_t tcp_accepted, tcp_closed_idle, tcp_closed_cap, tcp_open;
	uint64_t tcp_closed_slow;    /* a frame not whole within --tcp-io-timeout */
	uint64_t tcp_closed_source;  /* its source held --tcp-max-per-source already */
	uint64_t tcp_closed_evicted; /* the longest-quiet, closed for a new client (full) */
	uint64_t fd_exhausted;       /* accept failed with EMFILE/ENFILE */
	uint64_t wakeups, recv_calls, datagrams;
	uint64_t forward_over_cap;  /* refused before the forwarder: no context left */
	uint64_t qtype[MET_QTYPES]; /* queries whose question was read, by QTYPE */
	uint64_t responses;         /* responses counted (the rcode's sum): a batch's difference */
	/* receive to send of each answer sent in the batch it came in (not cumulative) */
	uint64_t dur_bucket[MET_TRANSPORTS][MET_DUR_BUCKETS + 1];
	uint64_t dur_sum_ns[MET_TRANSPORTS]; /* the count is the buckets' sum */
	uint64_t heartbeat_ns; /* CLOCK_MONOTONIC of the loop's last turn (the watchdog) */
} met_worker_t;

/* One upstream's forwarding counters, summed over the workers. */
typedef struct {
	char addr[CFG_ADDR_TEXT]; /* as configured (a copy) */
	uint64_t queries, timeouts, mismatched, tcp_retries;
	uint64_t rcode[MET_RCODES + 1];
	uint64_t lat_bucket[MET_LAT_BUCKETS + 1]; /* not cumulative: (bound[i-1], bound[i]], +Inf */
	uint64_t lat_count, lat_sum_ns;
} met_upstream_t;

/* The cache's counters (include/cache.h fills them; all zero while there is no cache). */
typedef struct {
	bool present;
	uint64_t hits, servfail, misses, stale, prefetches, inserts, evictions, entries, bytes;
} met_cache_t;

typedef struct {
	bool present; /* the registry is open */
	uint64_t generation;
	uint64_t written_ns; /* 0: never written */
	bool follows;        /* a follower's position is stored */
	uint64_t follow_seq, follow_applied_ns;
	uint64_t follow_head, follow_contact_ns; /* the bucket's head, the last contact with NATS */
	bool follow_synced;                      /* its first full sync has committed */
} met_registry_t;

typedef struct {
	double cpu_seconds, start_time_seconds;
	uint64_t resident_bytes, virtual_bytes, open_fds, max_fds;
	bool present;
} met_process_t;

/* Everything one scrape shows. */
typedef struct {
	const char *version;  /* the release, "1.0.0" */
	const char *revision; /* git's description of the build's tree; "" or NULL: none */
	unsigned workers;
	met_worker_t sum; /* the workers' counters added up (heartbeat_ns unused) */
	met_upstream_t up[CFG_UPSTREAM_MAX];
	size_t nup;
	uint64_t forward_inflight, forward_over_cap;
	uint64_t forward_refused_norecurse;
	uint64_t forward_over_share;
	uint64_t forward_fd_exhausted; /* an upstream socket not opened: EMFILE/ENFILE */
	uint64_t reloads, reload_failures;
	met_registry_t reg;
	met_cache_t cache;
	struct {
		bool present; /* --dnstap is on */
		uint64_t sent, dropped;
	} dnstap;
	met_process_t proc;
	double scrape_seconds; /* how long the previous scrape took inside internald */
} met_snapshot_t;

/* A growing text buffer (the scrape's, never the workers'). */
typedef struct {
	char *buf;
	size_t len, cap;
	bool failed; /* out of memory: the text is incomplete */
} met_buf_t;

/*
 * Counts what ans_process decided for one query into m: act and a's last_* fields (the
 * rcode, the name form, the REFUSED reason), TC on a UDP answer (out, outlen bytes;
 * nothing is counted for an empty one), a drop's reason from the query (pkt, len bytes),
 * and the QTYPE of every query not dropped whose question was read (a->q), forwarded
 * ones included.
 * Pure: it stores into m and reads nothing else.
 */
void met_count_answer(met_worker_t *m, const ans_ctx_t *a, bool tcp, ans_action_t act,
                      const uint8_t *pkt, size_t len, const uint8_t *out, size_t outlen);
/*
 * A batch's answers: n answers sent over transport t (MET_UDP, MET_TCP) each ns after
 * the batch was received. One bucket search and a few stores for the whole batch.
 */
void met_count_batch(met_worker_t *m, int t, uint64_t n, uint64_t ns);
/* The qtype index of a QTYPE (MET_QTYPE_OTHER for every type not named). */
unsigned met_qtype_index(uint16_t qtype);
/* The duration bucket of ns nanoseconds (MET_DUR_BUCKETS: +Inf). */
unsigned met_dur_bucket(uint64_t ns);
/* Adds w's counters to sum. */
void met_worker_add(met_worker_t *sum, const met_worker_t *w);
/* The rcode index of a response (header rcode, BADVERS when ext says so). */
static inline unsigned met_rcode_index(unsigned rcode)
{
	return rcode < MET_RCODES ? rcode : MET_RCODES;
}
/* The latency bucket of ns nanoseconds (MET_LAT_BUCKETS: +Inf). */
unsigned met_lat_bucket(uint64_t ns);

/*
 * Appends the whole exposition of s to b: every family once, each with one HELP and one
 * TYPE line. Returns 0, or -ENOMEM (b->failed; free b->buf anyway).
 */
int met_render(met_buf_t *b, const met_snapshot_t *s);
/* Frees b's text. */
void met_buf_free(met_buf_t *b);

/* The families of a program other than internald (the follower's): one HELP and TYPE
 * each, then the sample. */
void met_put_counter(met_buf_t *b, const char *name, const char *help, uint64_t v);
void met_put_gauge(met_buf_t *b, const char *name, const char *help, double v);
/* The process_* families (met_process_read's). */
void met_put_process(met_buf_t *b, const met_process_t *p);

#endif
