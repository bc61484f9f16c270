/*
 * cachebench — the cost of cache_lookup (include/cache.h) without sockets: one thread
 * looking up stored answers, then R reader threads while one writer inserts new names
 * without pause, for a cache of many shards (the default 64 MiB: 64) and of few
 * (the smallest, 256 KiB: 4; its readers also miss, as the writer evicts their names).
 * CPU per lookup is the reader threads' own CPU time (what waiting on a lock costs:
 * the futex calls); wall time also counts being descheduled on a shared machine. The
 * second line gives the writer a cache of its own: what is left is not lock waiting but
 * the writer's memory traffic (cold entries, malloc) evicting the readers' lines. Prints ns
 * per lookup and the writer's inserts per second.
 *
 *   build/cachebench [SECONDS] [READERS]
 *   build/cachebench zipf [QUERIES] [ORGS...]
 *       the hit rate and bytes of the default 64 MiB cache for bench/forward's Zipf
 *       stream (s = 1 over 1M names), each query from one of ORGS orgs at random: first
 *       with one entry per name for every org, then with the org in the key
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "wire.h"

#define NAMES 4096

typedef struct {
	uint8_t pkt[300], resp[400];
	size_t plen, rlen;
	wire_query_t q;
} item_t;

static item_t items[NAMES];
static atomic_bool stop;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "n<i>.example.com A" and its answer (one A record, TTL 3600). */
static void make(item_t *it, unsigned i, const char *prefix)
{
	uint8_t *p = it->pkt;
	memset(p, 0, 12);
	p[0] = (uint8_t)(i >> 8), p[1] = (uint8_t)i, p[2] = 0x01, p[5] = 1;
	char label[32];
	int l = snprintf(label, sizeof(label), "%s%u", prefix, i);
	size_t o = 12;
	p[o++] = (uint8_t)l;
	memcpy(p + o, label, (size_t)l);
	o += (size_t)l;
	memcpy(p + o, "\7example\3com\0\0\1\0\1", 17);
	o += 17;
	it->plen = o;
	if (wire_parse_query(p, o, &it->q) != WIRE_OK)
		abort();
	memcpy(it->resp, p, o);
	it->resp[2] = 0x81, it->resp[3] = 0x80, it->resp[7] = 1;
	const uint8_t rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1};
	memcpy(it->resp + o, rr, sizeof(rr));
	it->rlen = o + sizeof(rr);
}

typedef struct {
	cache_t *c;
	unsigned seed;
	unsigned long ops;
	double cpu; /* the thread's own CPU seconds */
} arg_t;

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double secs)
{
	struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
	nanosleep(&ts, NULL);
}

static void *reader(void *v)
{
	arg_t *a = v;
	uint8_t out[1232];
	size_t len;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int k = 0; k < 1024; k++) {
			a->seed = a->seed * 1103515245u + 12345u;
			item_t *it = &items[(a->seed >> 8) % NAMES];
			cache_lookup(a->c, it->pkt, &it->q, 1232, 1000, false, out, sizeof(out),
			             &len);
		}
		a->ops += 1024;
	}
	a->cpu = thread_cpu_s();
	return NULL;
}

static void *writer(void *v)
{
	arg_t *a = v;
	item_t it;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		make(&it, a->seed++, "w");
		cache_insert(a->c, &it.q, it.resp, it.rlen, 1000);
		a->ops++;
	}
	return NULL;
}

/* own: the writer inserts into a cache of its own (no lock shared with the readers), to
 * tell lock waits from the cost of the writer's memory traffic. */
static void run(size_t bytes, double secs, int readers, bool own)
{
	cache_conf_t conf = {.max_bytes = bytes, .max_ttl = 86400, .neg_max_ttl = 3600};
	cache_t *c;
	if (cache_create(&c, &conf))
		abort();
	for (unsigned i = 0; i < NAMES; i++)
		cache_insert(c, &items[i].q, items[i].resp, items[i].rlen, 1000);
	/* one thread alone */
	arg_t solo = {c, 1, 0, 0};
	atomic_store(&stop, false);
	pthread_t t;
	pthread_create(&t, NULL, reader, &solo);
	double t0 = now_s();
	sleep_s(secs / 2);
	atomic_store(&stop, true);
	pthread_join(t, NULL);
	(void)t0;
	double solo_ns = solo.cpu * 1e9 / (double)solo.ops;
	/* readers and a writer */
	cache_t *wc = c;
	if (own && cache_create(&wc, &conf))
		abort();
	arg_t r[16], w = {wc, 0, 0, 0};
	atomic_store(&stop, false);
	pthread_t rt[16], wt;
	t0 = now_s();
	for (int i = 0; i < readers; i++) {
		r[i] = (arg_t){c, (unsigned)i * 7919u + 3, 0, 0};
		pthread_create(&rt[i], NULL, reader, &r[i]);
	}
	pthread_create(&wt, NULL, writer, &w);
	sleep_s(secs);
	atomic_store(&stop, true);
	unsigned long ops = 0;
	double cpu = 0;
	for (int i = 0; i < readers; i++) {
		pthread_join(rt[i], NULL);
		ops += r[i].ops;
		cpu += r[i].cpu;
	}
	pthread_join(wt, NULL);
	double el = now_s() - t0;
	cache_stats_t st;
	cache_stats(c, &st);
	printf("cache %6zu KiB%s: one reader %.0f ns CPU/lookup; %d readers + 1 writer: %.0f ns "
	       "CPU/lookup (%.0f ns wall per reader), %.0f inserts/s (%llu evictions)\n",
	       bytes / 1024, own ? " (writer's own)" : "", solo_ns, readers,
	       cpu * 1e9 / (double)ops, el * 1e9 * readers / (double)ops, (double)w.ops / el,
	       (unsigned long long)st.evictions);
	if (wc != c)
		cache_free(wc);
	cache_free(c);
}

/* One pass of the Zipf stream; keyed: the org is part of the key. */
static void zipf(unsigned long queries, unsigned orgs, bool keyed)
{
	cache_conf_t conf = {.max_bytes = (size_t)64 << 20, .max_ttl = 86400, .neg_max_ttl = 3600};
	cache_t *c;
	if (cache_create(&c, &conf))
		abort();
	unsigned long long x = 11;
	item_t it;
	uint8_t out[1232];
	size_t len;
	unsigned long hits = 0;
	for (unsigned long i = 0; i < queries; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		double u = (double)(x >> 11) / 9007199254740992.0;
		unsigned rank = (unsigned)exp(u * log(1e6)); /* ~ 1/k, as bench/forward's awk */
		make(&it, rank, "z");
		it.q.scope = keyed ? (unsigned)(x % orgs) + 1 : 0;
		uint64_t now = 1000 + i / 50; /* 50k q/s */
		if (cache_lookup(c, it.pkt, &it.q, 1232, now, false, out, sizeof(out), &len) !=
		    CACHE_MISS)
			hits++;
		else
			cache_insert(c, &it.q, it.resp, it.rlen, now);
	}
	cache_stats_t st;
	cache_stats(c, &st);
	printf("zipf %lu queries, %4u orgs, %-13s: hit rate %5.2f%%, %8llu entries, %6.1f MiB, "
	       "%llu evictions\n",
	       queries, orgs, keyed ? "org in key" : "shared",
	       100.0 * (double)hits / (double)queries, (unsigned long long)st.entries,
	       (double)st.bytes / (1 << 20), (unsigned long long)st.evictions);
	cache_free(c);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "zipf") == 0) {
		unsigned long queries = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000000;
		static const char *const dflt[] = {"1", "10", "100", "1000"};
		const char *const *orgs = argc > 3 ? (const char *const *)argv + 3 : dflt;
		int n = argc > 3 ? argc - 3 : 4;
		for (int i = 0; i < n; i++) {
			unsigned o = (unsigned)atoi(orgs[i]);
			if (o < 1)
				return 2;
			if (i == 0)
				zipf(queries, o, false);
			zipf(queries, o, true);
		}
		return 0;
	}
	double secs = argc > 1 ? atof(argv[1]) : 2;
	int readers = argc > 2 ? atoi(argv[2]) : 2;
	if (readers < 1 || readers > 16 || secs <= 0)
		return 2;
	for (unsigned i = 0; i < NAMES; i++)
		make(&items[i], i, "n");
	run((size_t)64 << 20, secs, readers, false);
	run((size_t)64 << 20, secs, readers, true);
	run(CACHE_MIN_BYTES, secs, readers, false);
	return 0;
}
