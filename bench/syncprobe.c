/*
 * syncprobe — bench/sync's load and latency probe for the fleet registry, through kv.h.
 *
 *   syncprobe URL BUCKET latency CHANGES RATE SECONDS PROBE_EVERY PORT...
 *       puts changes (lines "KEY VALUE" of file CHANGES, cycled) at RATE per second for
 *       SECONDS; every PROBE_EVERY-th change is instead a new Machine of its own app
 *       probe<N> in org0, and a second thread asks every internald at [::1]:PORT for
 *       AAAA probe<N>.internal until it answers. Prints p50/p99/max of the time from
 *       the put to the answer, over every probe and every server.
 *   syncprobe URL BUCKET flood CHANGES N
 *       puts N changes as fast as NATS acknowledges them; prints the rate.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kv.h"
#include "log.h"

#define MAX_PORTS  32
#define MAX_PROBES 100000

typedef struct {
	char **key, **val;
	size_t n;
} changes_t;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int load(const char *path, changes_t *c)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, alloc = 0;
	ssize_t len;
	if (!f)
		return -errno;
	while ((len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		char *sp = strchr(line, ' ');
		if (!sp)
			continue;
		*sp = '\0';
		if (c->n == alloc) {
			alloc = alloc ? 2 * alloc : 4096;
			c->key = realloc(c->key, alloc * sizeof(char *));
			c->val = realloc(c->val, alloc * sizeof(char *));
			if (!c->key || !c->val)
				return -ENOMEM;
		}
		c->key[c->n] = strdup(line);
		c->val[c->n] = strdup(sp + 1);
		c->n++;
	}
	free(line);
	fclose(f);
	return c->n ? 0 : -EINVAL;
}

/* ---- the probe thread ------------------------------------------------------------------ */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	double sent[MAX_PROBES];
	int nsent;
	bool done;
	int ports[MAX_PORTS], nports;
	double *lat;
	size_t nlat, lost;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static size_t query(uint8_t *buf, int probe, uint16_t id)
{
	size_t n = 0;
	char label[32];
	buf[n++] = (uint8_t)(id >> 8), buf[n++] = (uint8_t)id;
	buf[n++] = 0x01, buf[n++] = 0; /* RD */
	buf[n++] = 0, buf[n++] = 1, memset(buf + n, 0, 6), n += 6;
	int l = snprintf(label, sizeof(label), "probe%d", probe);
	buf[n++] = (uint8_t)l, memcpy(buf + n, label, (size_t)l), n += (size_t)l;
	buf[n++] = 8, memcpy(buf + n, "internal", 8), n += 8, buf[n++] = 0;
	buf[n++] = 0, buf[n++] = 28, buf[n++] = 0, buf[n++] = 1;
	return n;
}

/* Every probe put and not yet answered by every server is asked of those servers each
 * round (so a slow answer to one probe never delays the measurement of the next); each
 * (probe, server) records its time from the put to the first answer, or counts as lost
 * after 3 s. A query's id is (probe % 2048) * 32 + server. */
static void *prober(void *arg)
{
	(void)arg;
	int fd = socket(AF_INET6, SOCK_DGRAM, 0);
	struct timeval tv = {0, 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	static bool answered[MAX_PROBES][MAX_PORTS];
	uint8_t q[300], r[1500];
	int first = 0; /* every probe before it is done */
	for (;;) {
		pthread_mutex_lock(&P.mu);
		while (first >= P.nsent && !P.done)
			pthread_cond_wait(&P.cv, &P.mu);
		int nsent = P.nsent;
		bool done = P.done;
		pthread_mutex_unlock(&P.mu);
		if (first >= nsent && done)
			break;
		double t = now();
		for (int p = first; p < nsent && p < first + 2048; p++) {
			if (t - P.sent[p] > 3.0)
				continue;
			for (int s = 0; s < P.nports; s++) {
				if (answered[p][s])
					continue;
				struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
				                          .sin6_port = htons((uint16_t)P.ports[s])};
				sa.sin6_addr = in6addr_loopback;
				size_t n = query(q, p, (uint16_t)((p % 2048) * 32 + s));
				sendto(fd, q, n, 0, (struct sockaddr *)&sa, sizeof(sa));
			}
		}
		double until = now() + 0.001;
		while (now() < until) {
			ssize_t got = recv(fd, r, sizeof(r), 0);
			if (got < 12)
				continue;
			int id = r[0] << 8 | r[1], s = id % 32,
			    p = first + ((id / 32 - first % 2048 + 2048) % 2048);
			if (p < nsent && s < P.nports && !answered[p][s] && (r[6] | r[7])) {
				answered[p][s] = true;
				P.lat[P.nlat++] = now() - P.sent[p];
			}
		}
		/* move past probes every server answered, or that are lost */
		while (first < nsent) {
			int n = 0;
			for (int s = 0; s < P.nports; s++)
				n += answered[first][s];
			if (n == P.nports)
				first++;
			else if (now() - P.sent[first] > 3.0)
				P.lost += (size_t)(P.nports - n), first++;
			else
				break;
		}
	}
	close(fd);
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* ---- main ------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	if (argc < 6) {
		fputs("usage: syncprobe URL BUCKET latency CHANGES RATE SECONDS EVERY PORT...\n"
		      "       syncprobe URL BUCKET flood CHANGES N\n",
		      stderr);
		return 2;
	}
	const char *url = argv[1];
	kv_conn_t *c = NULL;
	kv_bucket_t *b;
	changes_t ch = {0};
	log_set_level(LOG_WARN);
	int rc = load(argv[4], &ch);
	if (rc) {
		fprintf(stderr, "syncprobe: %s: %s\n", argv[4], strerror(-rc));
		return 1;
	}
	if ((rc = kv_connect(&c, &url, 1, false)) || (rc = kv_bucket_open(c, argv[2], 0, 0, &b))) {
		fprintf(stderr, "syncprobe: %s\n", kv_strerror(rc));
		return 1;
	}
	if (strcmp(argv[3], "flood") == 0) {
		long n = atol(argv[5]), i = 0;
		double t0 = now();
		for (; i < n && !rc; i++)
			rc = kv_put(b, ch.key[i % ch.n], ch.val[i % ch.n],
			            strlen(ch.val[i % ch.n]));
		n = rc ? i - 1 : n; /* what was sent */
		if (!rc)
			rc = kv_flush(b);
		double t = now() - t0;
		printf("flood: %ld changes acknowledged in %.2f s (%.0f/s)\n", n, t, n / t);
	} else if (argc >= 9) {
		double rate = atof(argv[5]), secs = atof(argv[6]);
		int every = atoi(argv[7]);
		for (int i = 8; i < argc && P.nports < MAX_PORTS; i++)
			P.ports[P.nports++] = atoi(argv[i]);
		P.lat = calloc(MAX_PROBES * (size_t)P.nports, sizeof(double));
		pthread_t th;
		pthread_create(&th, NULL, prober, NULL);
		double t0 = now();
		long total = (long)(rate * secs);
		for (long i = 0; i < total && !rc; i++) {
			double due = t0 + i / rate, d = due - now();
			if (d > 0)
				usleep((useconds_t)(d * 1e6));
			if (every > 0 && i % every == 0 && P.nsent < MAX_PROBES) {
				char key[128], val[512];
				int p = P.nsent;
				snprintf(key, sizeof(key), "machine.org0.ffff%010x", p);
				snprintf(val, sizeof(val),
				         "{\"kind\":\"machine\",\"id\":\"ffff%010x\",\"org\":"
				         "\"org0\","
				         "\"app\":\"probe%d\",\"region\":\"ord\",\"private_ip\":"
				         "\"fdaa:0:100:fffe:%x:0:%x:2\",\"state\":\"started\"}",
				         p, p, p >> 16, p & 0xffff);
				double sent = now();
				rc = kv_put(b, key, val, strlen(val));
				pthread_mutex_lock(&P.mu);
				P.sent[P.nsent++] = sent;
				pthread_cond_signal(&P.cv);
				pthread_mutex_unlock(&P.mu);
			} else {
				size_t k = (size_t)i % ch.n;
				rc = kv_put(b, ch.key[k], ch.val[k], strlen(ch.val[k]));
			}
		}
		if (!rc)
			rc = kv_flush(b);
		double t = now() - t0;
		pthread_mutex_lock(&P.mu);
		P.done = true;
		pthread_cond_signal(&P.cv);
		pthread_mutex_unlock(&P.mu);
		pthread_join(th, NULL);
		qsort(P.lat, P.nlat, sizeof(double), cmp_d);
		if (P.nlat)
			printf("latency: %ld changes in %.1f s (%.0f/s), %d probes x %d servers: "
			       "p50 "
			       "%.1f ms, p99 %.1f ms, max %.1f ms, unanswered %zu\n",
			       total, t, total / t, P.nsent, P.nports, 1e3 * P.lat[P.nlat / 2],
			       1e3 * P.lat[(size_t)(P.nlat * 0.99)], 1e3 * P.lat[P.nlat - 1],
			       P.lost);
	} else {
		fputs("syncprobe: latency needs RATE SECONDS EVERY PORT...\n", stderr);
		rc = -EINVAL;
	}
	if (rc)
		fprintf(stderr, "syncprobe: %s\n", kv_strerror(rc));
	kv_bucket_close(b);
	kv_close(c);
	return rc ? 1 : 0;
}
