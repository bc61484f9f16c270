/*
 * fleetprobe — bench/fleet's propagation probe, through kv.h and registry.h.
 *
 *   fleetprobe URL BUCKET CHANGES RATE SECONDS DB...
 *       puts changes (lines "KEY VALUE" of file CHANGES, cycled) at RATE per second for
 *       SECONDS into the bucket at URL, the only writer meanwhile, so that the i-th put
 *       is stream sequence last+i; and reads every follower's registry DB (read-only,
 *       its stored position) every millisecond. Prints, over every change and every
 *       follower, p50/p99/max of the time from the put to the commit that applied it,
 *       and how many never arrived within 10 s of the last put.
 *   fleetprobe --wait SEQ SECONDS T0_MS DB...
 *       reads every follower's registry DB every millisecond until each has applied stream
 *       sequence SEQ, or SECONDS have passed; prints how many did and p50/max of the time
 *       each took from T0_MS (milliseconds since the epoch; 0: the probe's start). Exit 0
 *       when all did, 1 when some did not.
 *   fleetprobe --proxy PORT TARGET_PORT
 *       a TCP relay from 127.0.0.1:PORT to 127.0.0.1:TARGET_PORT, until killed: bench/fleet
 *       puts it on a leaf node's link to the hub, and kills it to cut the link (every
 *       connection through it closes, and new ones are refused until it runs again).
 * No internald: the registry's position is what a follower has applied.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kv.h"
#include "log.h"
#include "registry.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The position follower registry r has applied (0 if none). */
static uint64_t applied(reg_t *r)
{
	reg_txn_t *t;
	reg_follow_t f;
	if (reg_txn_begin(r, false, &t))
		return 0;
	int rc = reg_get_follow(t, &f);
	reg_txn_abort(t);
	return rc ? 0 : f.seq;
}

static double wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Opens the registries of argv[0..n-1] read-only; NULL (said why) if one fails. Each with
 * a map of 4 GiB or twice its file: a reader's default map is 1 TiB, and 128 TiB of
 * address space holds no more than 127 of those (K = 300 followers). */
static reg_t **open_all(char **dbs, int n)
{
	reg_t **reg = calloc((size_t)n, sizeof(*reg));
	for (int d = 0; reg && d < n; d++) {
		char path[4096];
		struct stat st;
		size_t map = (size_t)4 << 30;
		snprintf(path, sizeof(path), "%s/data.mdb", dbs[d]);
		if (stat(path, &st) == 0 && (size_t)st.st_size * 2 > map)
			map = (size_t)st.st_size * 2;
		if (reg_open(&reg[d], dbs[d], REG_RDONLY, map)) {
			fprintf(stderr, "fleetprobe: cannot open %s\n", dbs[d]);
			return NULL;
		}
	}
	return reg;
}

static int wait_main(int argc, char **argv)
{
	uint64_t want = strtoull(argv[2], NULL, 10);
	double secs = atof(argv[3]), t0 = atof(argv[4]);
	int ndb = argc - 5;
	if (t0 <= 0)
		t0 = wall_ms();
	reg_t **reg = open_all(argv + 5, ndb);
	double *took = calloc((size_t)ndb, sizeof(*took));
	bool *got = calloc((size_t)ndb, sizeof(*got));
	if (!reg || !took || !got)
		return 1;
	int done = 0;
	uint64_t least = UINT64_MAX;
	for (double start = now(); done < ndb && now() - start < secs;) {
		least = UINT64_MAX;
		for (int d = 0; d < ndb; d++) {
			if (got[d])
				continue;
			uint64_t s = applied(reg[d]);
			if (s >= want)
				took[d] = wall_ms() - t0, got[d] = true, done++;
			else if (s < least)
				least = s;
		}
		nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
	}
	double *t = calloc((size_t)ndb, sizeof(*t));
	int n = 0;
	for (int d = 0; d < ndb; d++)
		if (got[d])
			t[n++] = took[d];
	qsort(t, (size_t)n, sizeof(*t), cmp);
	printf("seq=%llu followers=%d reached=%d", (unsigned long long)want, ndb, n);
	if (n)
		printf(" p50_ms=%.0f max_ms=%.0f", t[n / 2], t[n - 1]);
	if (n < ndb)
		printf(" least_behind=%llu", (unsigned long long)least);
	putchar('\n');
	for (int d = 0; d < ndb; d++)
		reg_close(reg[d]);
	return n == ndb ? 0 : 1;
}

static int listen_on(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16))
		return -1;
	return fd;
}

static int connect_to(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Writes all of buf to fd (blocking: both ends are nats-servers, which always read). */
static int write_all(int fd, const char *buf, ssize_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, (size_t)n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w, n -= w;
	}
	return 0;
}

enum { PROXY_MAX = 64 };

static int proxy_main(char **argv)
{
	int lfd = listen_on(atoi(argv[2])), target = atoi(argv[3]);
	if (lfd < 0)
		return fprintf(stderr, "fleetprobe: listen %s: %s\n", argv[2], strerror(errno)), 1;
	signal(SIGPIPE, SIG_IGN);
	/* pfd[0] listens; then pairs: pfd[2i+1] accepted, pfd[2i+2] its connection onward */
	struct pollfd pfd[1 + 2 * PROXY_MAX];
	int n = 1;
	pfd[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
	static char buf[1 << 16];
	for (;;) {
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int i = 1; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			int peer = i % 2 ? i + 1 : i - 1;
			ssize_t r = read(pfd[i].fd, buf, sizeof(buf));
			if (r > 0 && write_all(pfd[peer].fd, buf, r) == 0)
				continue;
			/* one side closed: close both, the last pair takes their place */
			int first = i % 2 ? i : i - 1;
			close(pfd[first].fd);
			close(pfd[first + 1].fd);
			pfd[first] = pfd[n - 2], pfd[first + 1] = pfd[n - 1];
			n -= 2;
			break; /* the array changed: poll again */
		}
		if (pfd[0].revents & POLLIN) {
			int a = accept(lfd, NULL, NULL), b = a < 0 ? -1 : connect_to(target);
			if (b < 0 || n + 2 > 1 + 2 * PROXY_MAX) {
				if (a >= 0)
					close(a);
				if (b >= 0)
					close(b);
				continue;
			}
			pfd[n++] = (struct pollfd){.fd = a, .events = POLLIN};
			pfd[n++] = (struct pollfd){.fd = b, .events = POLLIN};
		}
	}
}

int main(int argc, char **argv)
{
	if (argc >= 6 && !strcmp(argv[1], "--wait"))
		return wait_main(argc, argv);
	if (argc == 4 && !strcmp(argv[1], "--proxy"))
		return proxy_main(argv);
	if (argc < 7) {
		fputs("usage: fleetprobe URL BUCKET CHANGES RATE SECONDS DB...\n"
		      "       fleetprobe --wait SEQ SECONDS T0_MS DB...\n"
		      "       fleetprobe --proxy PORT TARGET_PORT\n",
		      stderr);
		return 2;
	}
	log_set_level(LOG_WARN);
	const char *url = argv[1];
	double rate = atof(argv[4]), secs = atof(argv[5]);
	int ndb = argc - 6;
	FILE *cf = fopen(argv[3], "r");
	if (!cf || rate <= 0 || secs <= 0)
		return fprintf(stderr, "fleetprobe: %s: %s\n", argv[3], strerror(errno)), 1;
	char **key = NULL, **val = NULL, *line = NULL;
	size_t nch = 0, cap = 0;
	ssize_t len;
	while ((len = getline(&line, &cap, cf)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		char *sp = strchr(line, ' ');
		if (!sp)
			continue;
		*sp = '\0';
		key = realloc(key, (nch + 1) * sizeof(*key));
		val = realloc(val, (nch + 1) * sizeof(*val));
		key[nch] = strdup(line), val[nch] = strdup(sp + 1), nch++;
	}
	fclose(cf);
	reg_t **reg = open_all(argv + 6, ndb);
	uint64_t *seen = calloc((size_t)ndb, sizeof(*seen));
	if (!reg || !seen)
		return 1;
	kv_conn_t *c;
	kv_bucket_t *b;
	kv_info_t info;
	if (!nch || kv_connect(&c, &url, 1, false) || kv_bucket_open(c, argv[2], 0, 0, &b) ||
	    kv_info(b, &info))
		return fprintf(stderr, "fleetprobe: no changes, or no bucket at %s\n", url), 1;
	size_t total = (size_t)(rate * secs);
	double *sent = calloc(total, sizeof(*sent));
	double *lat = malloc(total * (size_t)ndb * sizeof(*lat));
	size_t nlat = 0, nput = 0;
	uint64_t base = info.last;
	for (int d = 0; d < ndb; d++)
		seen[d] = applied(reg[d]);
	double t0 = now(), end = 0;
	for (;;) {
		double t = now();
		while (nput < total && t >= t0 + (double)nput / rate) {
			size_t i = nput % nch;
			sent[nput++] = now();
			kv_put(b, key[i], val[i], strlen(val[i]));
		}
		if (nput == total && end == 0)
			end = t;
		bool all = nput == total;
		for (int d = 0; d < ndb; d++) {
			uint64_t s = applied(reg[d]);
			double at = now();
			for (uint64_t q = seen[d] + 1; q <= s; q++)
				if (q > base && q - base <= nput)
					lat[nlat++] = at - sent[q - base - 1];
			if (s > seen[d])
				seen[d] = s;
			all = all && seen[d] >= base + total;
		}
		if (all || (end && t - end > 10))
			break;
		nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
	}
	kv_flush(b);
	qsort(lat, nlat, sizeof(*lat), cmp);
	size_t lost = total * (size_t)ndb - nlat;
	if (nlat)
		printf("changes=%zu followers=%d rate=%.0f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f "
		       "lost=%zu\n",
		       total, ndb, rate, 1000 * lat[nlat / 2], 1000 * lat[nlat * 99 / 100],
		       1000 * lat[nlat - 1], lost);
	else
		printf("changes=%zu followers=%d rate=%.0f lost=%zu\n", total, ndb, rate, lost);
	kv_bucket_close(b);
	kv_close(c);
	for (int d = 0; d < ndb; d++)
		reg_close(reg[d]);
	return 0;
}
