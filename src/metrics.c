/*
 * metrics.c — internald's counters as Prometheus text (exposition format 0.0.4).
 *
 * Names follow the Prometheus conventions: a prefix (internald_, process_), base units
 * (seconds, bytes), _total on counters, one HELP and one TYPE line per family and every
 * sample of a family together. Pure: it formats numbers handed to it and never reads
 * a clock, a file or a socket; it allocates only the scrape's own text buffer.
 */
#include "metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double met_lat_bounds[MET_LAT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                0.05,   0.1,   0.25,   0.5,   1,    2.5};

/* internald's own answers take microseconds; the upper buckets show a stalled loop */
const uint64_t met_dur_bounds_ns[MET_DUR_BUCKETS] = {
        10000,   25000,   50000,    100000,   250000,   500000,    1000000,
        2500000, 5000000, 10000000, 25000000, 50000000, 100000000, 250000000};

static const char *const qtypes[MET_QTYPES] = {"A",  "AAAA", "TXT", "PTR",  "SOA",
                                               "NS", "SRV",  "ANY", "other"};
static const char *const transports[MET_TRANSPORTS] = {"udp", "tcp"};
static const char *const families[MET_FAMILIES] = {"ipv4", "ipv6"};
static const char *const forms[MET_FORMS] = {
        "apex",    "app",  "region", "group", "vm",        "nearest", "metadata", "vms",
        "regions", "apps", "peers",  "peer",  "instances", "flycast", "ptr",      "other"};
static const char *const refused[MET_REFUSED_REASONS] = {"other_org", "not_allowed", "class",
                                                         "transfer",  "no_org",      "no_upstream"};
static const char *const dropped[MET_DROP_REASONS] = {"short", "qr_set", "unparseable", "oversize"};

/* ---- one query's outcome into a worker's counters ----------------------------------------- */

static const uint8_t form_index[] = {
        [NAME_NX] = MET_FORM_OTHER,
        [NAME_APEX] = MET_FORM_APEX,
        [NAME_ENT] = MET_FORM_OTHER,
        [NAME_APP] = MET_FORM_APP,
        [NAME_REGION] = MET_FORM_REGION,
        [NAME_GROUP] = MET_FORM_GROUP,
        [NAME_VM] = MET_FORM_VM,
        [NAME_NEAREST] = MET_FORM_NEAREST,
        [NAME_META] = MET_FORM_METADATA,
        [NAME_VMS] = MET_FORM_VMS,
        [NAME_REGIONS] = MET_FORM_REGIONS,
        [NAME_APPS] = MET_FORM_APPS,
        [NAME_PEERS] = MET_FORM_PEERS,
        [NAME_PEER] = MET_FORM_PEER,
        [NAME_INSTANCES] = MET_FORM_INSTANCES,
        [NAME_FLYCAST] = MET_FORM_FLYCAST,
        [NAME_PTR] = MET_FORM_PTR,
};

/* answer.c's REFUSED reasons as the counter's labels (ANS_REFUSED_NO_FORWARD: no upstream). */
static const uint8_t refused_index[] = {
        [ANS_REFUSED_NOT_ALLOWED] = MET_REFUSED_NOT_ALLOWED,
        [ANS_REFUSED_OTHER_ORG] = MET_REFUSED_OTHER_ORG,
        [ANS_REFUSED_CLASS] = MET_REFUSED_CLASS,
        [ANS_REFUSED_TRANSFER] = MET_REFUSED_TRANSFER,
        [ANS_REFUSED_NO_ORG] = MET_REFUSED_NO_ORG,
        [ANS_REFUSED_NO_FORWARD] = MET_REFUSED_NO_UPSTREAM,
};

void met_count_answer(met_worker_t *m, const ans_ctx_t *a, bool tcp, ans_action_t act,
                      const uint8_t *pkt, size_t len, const uint8_t *out, size_t outlen)
{
	if (act == ANS_DROP) {
		MET_INC(m->dropped[len < WIRE_HDR         ? MET_DROP_SHORT
		                   : (pkt[2] & 0x80) != 0 ? MET_DROP_QR
		                                          : MET_DROP_UNPARSEABLE]);
		return;
	}
	if (a->q.has_question)
		MET_INC(m->qtype[met_qtype_index(a->q.qtype)]);
	if (act != ANS_REPLY || !outlen)
		return;
	MET_INC(m->responses);
	MET_INC(m->rcode[met_rcode_index(a->last_rcode < 0 ? MET_RCODES
	                                                   : (unsigned)a->last_rcode)]);
	/* an NXDOMAIN is of no form, whatever the name looked like (internald(8)) */
	if (a->last_form > NAME_OUTSIDE && (size_t)a->last_form < sizeof(form_index))
		MET_INC(m->form[a->last_rcode == WIRE_NXDOMAIN ? MET_FORM_OTHER
		                                               : form_index[a->last_form]]);
	if (!tcp && (out[2] & 0x02))
		MET_INC(m->truncated);
	if (a->last_refused >= 0 && (size_t)a->last_refused < sizeof(refused_index))
		MET_INC(m->refused[refused_index[a->last_refused]]);
}

unsigned met_qtype_index(uint16_t qtype)
{
	switch (qtype) {
	case WIRE_A:
		return MET_QTYPE_A;
	case WIRE_AAAA:
		return MET_QTYPE_AAAA;
	case WIRE_TXT:
		return MET_QTYPE_TXT;
	case WIRE_PTR:
		return MET_QTYPE_PTR;
	case WIRE_SOA:
		return MET_QTYPE_SOA;
	case WIRE_NS:
		return MET_QTYPE_NS;
	case 33: /* SRV */
		return MET_QTYPE_SRV;
	case WIRE_ANY:
		return MET_QTYPE_ANY;
	default:
		return MET_QTYPE_OTHER;
	}
}

unsigned met_dur_bucket(uint64_t ns)
{
	unsigned i = 0;
	while (i < MET_DUR_BUCKETS && ns > met_dur_bounds_ns[i])
		i++;
	return i;
}

void met_count_batch(met_worker_t *m, int t, uint64_t n, uint64_t ns)
{
	if (!n)
		return;
	MET_ADD(m->dur_bucket[t][met_dur_bucket(ns)], n);
	MET_ADD(m->dur_sum_ns[t], n * ns);
}

void met_worker_add(met_worker_t *sum, const met_worker_t *w)
{
	/* every field is a uint64_t: add them as an array, read each once, relaxed */
	uint64_t *d = (uint64_t *)sum;
	const uint64_t *s = (const uint64_t *)w;
	for (size_t i = 0; i < sizeof(*w) / sizeof(uint64_t); i++)
		d[i] += MET_LOAD(s[i]);
}

unsigned met_lat_bucket(uint64_t ns)
{
	double s = (double)ns / 1e9;
	unsigned i = 0;
	while (i < MET_LAT_BUCKETS && s > met_lat_bounds[i])
		i++;
	return i;
}

void met_buf_free(met_buf_t *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
}

static void put(met_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(met_buf_t *b, const char *fmt, ...)
{
	if (b->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		size_t room = b->cap - b->len;
		int n = vsnprintf(b->buf ? b->buf + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 16384;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(b->buf, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->buf = p, b->cap = cap;
	}
}

static void family(met_buf_t *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(met_buf_t *b, const char *name, const char *help, uint64_t v)
{
	family(b, name, "counter", help);
	put(b, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(met_buf_t *b, const char *name, const char *help, double v)
{
	family(b, name, "gauge", help);
	put(b, "%s %.17g\n", name, v);
}

static const char *rcode_name(unsigned i, char *buf, size_t len)
{
	static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
	                                    "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
	                                    "NXRRSET", "NOTAUTH", "NOTZONE"};
	if (i < sizeof(names) / sizeof(names[0]))
		return names[i];
	if (i == 16)
		return "BADVERS";
	if (i == MET_RCODES)
		return "other";
	snprintf(buf, len, "RCODE%u", i);
	return buf;
}

static void by_rcode(met_buf_t *b, const char *name, const char *extra, const uint64_t *rc)
{
	for (unsigned i = 0; i <= MET_RCODES; i++) {
		char tmp[16];
		if (!rc[i] && i != 0 && i != 2 && i != 3)
			continue; /* the three an operator graphs always exist, the rest when seen
			           */
		put(b, "%s{%srcode=\"%s\"} %llu\n", name, extra, rcode_name(i, tmp, sizeof(tmp)),
		    (unsigned long long)rc[i]);
	}
}

/* A label value: backslash, quote and newline escaped. */
static const char *label_escape(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	for (; *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"')
			buf[o++] = '\\', buf[o++] = *s;
		else if (*s == '\n')
			buf[o++] = '\\', buf[o++] = 'n';
		else
			buf[o++] = *s;
	}
	buf[o] = '\0';
	return buf;
}

static void render_queries(met_buf_t *b, const met_snapshot_t *s)
{
	const met_worker_t *w = &s->sum;
	family(b, "internald_queries_total", "counter",
	       "Queries received, by transport and address family.");
	for (int t = 0; t < MET_TRANSPORTS; t++)
		for (int f = 0; f < MET_FAMILIES; f++)
			put(b, "internald_queries_total{transport=\"%s\",family=\"%s\"} %llu\n",
			    transports[t], families[f], (unsigned long long)w->queries[t][f]);
	family(b, "internald_responses_total", "counter",
	       "Responses sent (answered here or relayed from upstream), by rcode.");
	by_rcode(b, "internald_responses_total", "", w->rcode);
	family(b, "internald_queries_by_type_total", "counter",
	       "Queries whose question was read (answered here or forwarded), by QTYPE.");
	for (int i = 0; i < MET_QTYPES; i++)
		put(b, "internald_queries_by_type_total{type=\"%s\"} %llu\n", qtypes[i],
		    (unsigned long long)w->qtype[i]);
	family(b, "internald_request_duration_seconds", "histogram",
	       "Time from the receipt of a batch of queries to the send of its answers, by "
	       "transport; every answer of the batch counts the batch's time. A forwarded query "
	       "answered later is not in it: its upstream's latency is.");
	for (int t = 0; t < MET_TRANSPORTS; t++) {
		uint64_t cum = 0;
		for (int k = 0; k < MET_DUR_BUCKETS; k++) {
			cum += w->dur_bucket[t][k];
			put(b,
			    "internald_request_duration_seconds_bucket{transport=\"%s\",le=\"%g\"} "
			    "%llu\n",
			    transports[t], (double)met_dur_bounds_ns[k] / 1e9,
			    (unsigned long long)cum);
		}
		cum += w->dur_bucket[t][MET_DUR_BUCKETS];
		put(b,
		    "internald_request_duration_seconds_bucket{transport=\"%s\",le=\"+Inf\"} "
		    "%llu\n",
		    transports[t], (unsigned long long)cum);
		put(b, "internald_request_duration_seconds_sum{transport=\"%s\"} %.9f\n",
		    transports[t], (double)w->dur_sum_ns[t] / 1e9);
		put(b, "internald_request_duration_seconds_count{transport=\"%s\"} %llu\n",
		    transports[t], (unsigned long long)cum); /* +Inf is the count, always */
	}
	family(b, "internald_answers_total", "counter",
	       "Queries answered from the registry, by the name form asked for.");
	for (int i = 0; i < MET_FORMS; i++)
		put(b, "internald_answers_total{form=\"%s\"} %llu\n", forms[i],
		    (unsigned long long)w->form[i]);
	counter(b, "internald_truncated_total",
	        "UDP responses sent with TC=1 (too large for the client's UDP size).",
	        w->truncated);
	family(b, "internald_refused_total", "counter", "Queries answered REFUSED, by reason.");
	for (int i = 0; i < MET_REFUSED_REASONS; i++)
		put(b, "internald_refused_total{reason=\"%s\"} %llu\n", refused[i],
		    (unsigned long long)w->refused[i]);
	family(b, "internald_dropped_total", "counter",
	       "Packets dropped without an answer, by reason.");
	for (int i = 0; i < MET_DROP_REASONS; i++)
		put(b, "internald_dropped_total{reason=\"%s\"} %llu\n", dropped[i],
		    (unsigned long long)w->dropped[i]);
}

static void render_tcp(met_buf_t *b, const met_snapshot_t *s)
{
	const met_worker_t *w = &s->sum;
	counter(b, "internald_fd_exhausted_total",
	        "Accepts and upstream sockets that failed for want of a file descriptor.",
	        w->fd_exhausted + s->forward_fd_exhausted);
	gauge(b, "internald_tcp_connections", "TCP client connections open now.",
	      (double)w->tcp_open);
	counter(b, "internald_tcp_accepted_total", "TCP client connections accepted.",
	        w->tcp_accepted);
	family(b, "internald_tcp_closed_total", "counter",
	       "TCP client connections closed by the server, by reason.");
	put(b, "internald_tcp_closed_total{reason=\"idle\"} %llu\n",
	    (unsigned long long)w->tcp_closed_idle);
	put(b, "internald_tcp_closed_total{reason=\"cap\"} %llu\n",
	    (unsigned long long)w->tcp_closed_cap);
	put(b, "internald_tcp_closed_total{reason=\"slow\"} %llu\n",
	    (unsigned long long)w->tcp_closed_slow);
	put(b, "internald_tcp_closed_total{reason=\"source\"} %llu\n",
	    (unsigned long long)w->tcp_closed_source);
	put(b, "internald_tcp_closed_total{reason=\"evicted\"} %llu\n",
	    (unsigned long long)w->tcp_closed_evicted);
}

static void render_workers(met_buf_t *b, const met_snapshot_t *s)
{
	const met_worker_t *w = &s->sum;
	gauge(b, "internald_workers", "Worker threads (one event loop each).", s->workers);
	counter(b, "internald_udp_wakeups_total",
	        "Times a worker's UDP socket woke its loop (readable events).", w->wakeups);
	counter(b, "internald_udp_recvmmsg_calls_total", "recvmmsg system calls made.",
	        w->recv_calls);
	counter(b, "internald_udp_datagrams_total", "UDP datagrams received.", w->datagrams);
	gauge(b, "internald_udp_datagrams_per_wakeup",
	      "Datagrams received per wake-up since the start (datagrams / wake-ups).",
	      w->wakeups ? (double)w->datagrams / (double)w->wakeups : 0);
	counter(b, "internald_reloads_total", "Configuration reloads applied (SIGHUP).",
	        s->reloads);
	counter(b, "internald_reload_failures_total",
	        "SIGHUP reloads rejected (the running configuration was kept).",
	        s->reload_failures);
}

static void render_forward(met_buf_t *b, const met_snapshot_t *s)
{
	char a[128];
	gauge(b, "internald_forward_inflight", "Forwarded queries waiting for an upstream now.",
	      (double)s->forward_inflight);
	counter(b, "internald_forward_over_cap_total",
	        "Queries answered SERVFAIL at once: the in-flight cap was reached.",
	        s->forward_over_cap);
	counter(b, "internald_forward_over_share_total",
	        "Queries answered SERVFAIL at once: their source held its share of the pool.",
	        s->forward_over_share);

	counter(b, "internald_forward_refused_norecurse_total",
	        "Questions without RD not in the cache: REFUSED, never sent upstream.",
	        s->forward_refused_norecurse);
	if (!s->nup)
		return;
	family(b, "internald_upstream_queries_total", "counter",
	       "Tries sent to each upstream (a query may try several).");
	for (size_t i = 0; i < s->nup; i++)
		put(b, "internald_upstream_queries_total{upstream=\"%s\"} %llu\n",
		    label_escape(s->up[i].addr, a, sizeof(a)),
		    (unsigned long long)s->up[i].queries);
	family(b, "internald_upstream_responses_total", "counter",
	       "Matching responses from each upstream, by rcode.");
	for (size_t i = 0; i < s->nup; i++) {
		char extra[160];
		snprintf(extra, sizeof(extra), "upstream=\"%s\",",
		         label_escape(s->up[i].addr, a, sizeof(a)));
		by_rcode(b, "internald_upstream_responses_total", extra, s->up[i].rcode);
	}
	struct {
		const char *name, *help;
		size_t off;
	} c[] = {
	        {"internald_upstream_timeouts_total", "Tries that timed out, per upstream.",
	         offsetof(met_upstream_t, timeouts)},
	        {"internald_upstream_mismatched_total",
	         "Responses dropped because address, ID or question did not match, per upstream.",
	         offsetof(met_upstream_t, mismatched)},
	        {"internald_upstream_tcp_retries_total",
	         "Truncated UDP responses retried over TCP, per upstream.",
	         offsetof(met_upstream_t, tcp_retries)},
	};
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		family(b, c[k].name, "counter", c[k].help);
		for (size_t i = 0; i < s->nup; i++)
			put(b, "%s{upstream=\"%s\"} %llu\n", c[k].name,
			    label_escape(s->up[i].addr, a, sizeof(a)),
			    (unsigned long long)*(const uint64_t *)((const char *)&s->up[i] +
			                                            c[k].off));
	}
	family(b, "internald_upstream_latency_seconds", "histogram",
	       "Time from a try's send to its matching response, per upstream.");
	for (size_t i = 0; i < s->nup; i++) {
		const met_upstream_t *u = &s->up[i];
		uint64_t cum = 0;
		label_escape(u->addr, a, sizeof(a));
		for (int k = 0; k < MET_LAT_BUCKETS; k++) {
			cum += u->lat_bucket[k];
			put(b,
			    "internald_upstream_latency_seconds_bucket{upstream=\"%s\",le=\"%g\"} "
			    "%llu\n",
			    a, met_lat_bounds[k], (unsigned long long)cum);
		}
		put(b,
		    "internald_upstream_latency_seconds_bucket{upstream=\"%s\",le=\"+Inf\"} %llu\n",
		    a, (unsigned long long)u->lat_count);
		put(b, "internald_upstream_latency_seconds_sum{upstream=\"%s\"} %.9f\n", a,
		    (double)u->lat_sum_ns / 1e9);
		put(b, "internald_upstream_latency_seconds_count{upstream=\"%s\"} %llu\n", a,
		    (unsigned long long)u->lat_count);
	}
}

static void render_registry(met_buf_t *b, const met_snapshot_t *s)
{
	const met_registry_t *r = &s->reg;
	if (!r->present)
		return;
	gauge(b, "internald_registry_generation",
	      "The registry's generation (bumped by every write transaction).",
	      (double)r->generation);
	gauge(b, "internald_registry_last_write_timestamp_seconds",
	      "When the registry's last write committed (Unix time; 0: never).",
	      (double)r->written_ns / 1e9);
	if (!r->follows)
		return;
	gauge(b, "internald_registry_follow_synced",
	      "1 once the follower's first full sync has committed; 0: internald is not ready "
	      "and answers its zones SERVFAIL.",
	      r->follow_synced ? 1 : 0);
	gauge(b, "internald_registry_follow_head_sequence",
	      "The bucket's last stream sequence as the follower last heard of it; lag in "
	      "changes is this minus internald_registry_follow_sequence.",
	      (double)r->follow_head);
	gauge(b, "internald_registry_follow_last_contact_timestamp_seconds",
	      "The follower's last contact with NATS (Unix time; written at least once a second "
	      "while connected; 0: never).",
	      (double)r->follow_contact_ns / 1e9);
	gauge(b, "internald_registry_follow_sequence",
	      "The last stream sequence the follower applied to this host's registry.",
	      (double)r->follow_seq);
	gauge(b, "internald_registry_follow_applied_timestamp_seconds",
	      "When the follower applied that sequence (Unix time).",
	      (double)r->follow_applied_ns / 1e9);
}

/* The forwarding cache's families (include/cache.h's counters, summed over its shards). */
static void render_cache(met_buf_t *b, const met_snapshot_t *s)
{
	const met_cache_t *c = &s->cache;
	if (!c->present)
		return;
	counter(b, "internald_cache_hits_total",
	        "Forwarded questions answered fresh from the cache (a stored SERVFAIL is not a "
	        "hit: internald_cache_servfail_total).",
	        c->hits);
	counter(b, "internald_cache_servfail_total",
	        "SERVFAIL answers from the cache: every upstream failed for the question in the "
	        "last 5 s.",
	        c->servfail);
	counter(b, "internald_cache_misses_total", "Forwarded questions not in the cache.",
	        c->misses);
	counter(b, "internald_cache_stale_total",
	        "Stale answers served because every upstream failed.", c->stale);
	counter(b, "internald_cache_prefetches_total", "Popular entries refreshed before expiry.",
	        c->prefetches);
	counter(b, "internald_cache_inserts_total", "Answers stored in the cache.", c->inserts);
	counter(b, "internald_cache_evictions_total", "Entries evicted to stay within the bound.",
	        c->evictions);
	gauge(b, "internald_cache_entries", "Entries in the cache now.", (double)c->entries);
	gauge(b, "internald_cache_bytes", "Bytes the cache holds now.", (double)c->bytes);
}

static void render_dnstap(met_buf_t *b, const met_snapshot_t *s)
{
	if (!s->dnstap.present)
		return;
	counter(b, "internald_dnstap_frames_total", "dnstap frames handed to the writer thread.",
	        s->dnstap.sent);
	counter(b, "internald_dnstap_dropped_total",
	        "dnstap frames dropped (queue full or no collector); a worker never waits.",
	        s->dnstap.dropped);
}

static void render_process(met_buf_t *b, const met_snapshot_t *s)
{
	const met_process_t *p = &s->proc;
	char v[64], r[64];
	family(b, "internald_build_info", "gauge", "Always 1; the labels say what is running.");
	put(b, "internald_build_info{version=\"%s\",revision=\"%s\"} 1\n",
	    label_escape(s->version ? s->version : "unknown", v, sizeof(v)),
	    label_escape(s->revision ? s->revision : "", r, sizeof(r)));
	gauge(b, "internald_scrape_duration_seconds",
	      "How long the previous scrape took inside internald (summing, rendering).",
	      s->scrape_seconds);
	met_put_process(b, p);
}

void met_put_process(met_buf_t *b, const met_process_t *p)
{
	if (!p->present)
		return;
	family(b, "process_cpu_seconds_total", "counter",
	       "Total user and system CPU time spent in seconds.");
	put(b, "process_cpu_seconds_total %.2f\n", p->cpu_seconds);
	gauge(b, "process_resident_memory_bytes", "Resident memory size in bytes.",
	      (double)p->resident_bytes);
	gauge(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
	      (double)p->virtual_bytes);
	gauge(b, "process_open_fds", "Number of open file descriptors.", (double)p->open_fds);
	gauge(b, "process_max_fds", "Maximum number of open file descriptors.", (double)p->max_fds);
	gauge(b, "process_start_time_seconds",
	      "Start time of the process since unix epoch in seconds.", p->start_time_seconds);
}

void met_put_counter(met_buf_t *b, const char *name, const char *help, uint64_t v)
{
	counter(b, name, help, v);
}

void met_put_gauge(met_buf_t *b, const char *name, const char *help, double v)
{
	gauge(b, name, help, v);
}

int met_render(met_buf_t *b, const met_snapshot_t *s)
{
	render_queries(b, s);
	render_tcp(b, s);
	render_forward(b, s);
	render_workers(b, s);
	render_registry(b, s);
	render_cache(b, s);
	render_dnstap(b, s);
	render_process(b, s);
	return b->failed ? -ENOMEM : 0;
}
