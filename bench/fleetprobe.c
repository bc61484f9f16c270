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
 * No internald: the registry's position is what a follower has applied.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int main(int argc, char **argv)
{
	if (argc < 7) {
		fputs("usage: fleetprobe URL BUCKET CHANGES RATE SECONDS DB...\n", stderr);
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
	reg_t **reg = calloc((size_t)ndb, sizeof(*reg));
	uint64_t *seen = calloc((size_t)ndb, sizeof(*seen));
	for (int d = 0; d < ndb; d++)
		if (reg_open(&reg[d], argv[6 + d], REG_RDONLY, 0))
			return fprintf(stderr, "fleetprobe: cannot open %s\n", argv[6 + d]), 1;
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
