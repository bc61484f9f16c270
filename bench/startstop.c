/*
 * bench/startstop — the cost of one Machine start or stop in a large registry, as a
 * long-running writer (the replication agent) pays it: one process, the registry
 * opened once, N transactions each stopping or starting one Machine picked at random.
 * Reports the median and p99 of the index work (inside the transaction) and of the
 * commit, without fsync (REG_NOSYNC) and, for a few, with it. With BATCH, then as the
 * follower writes (the write map, fsync, BATCH changes a transaction, each a whole
 * record through reg_put_machine): N random start/stops in random order, the rate and
 * the CPU a change.
 *
 *   build/startstop DB N [BATCH]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "registry.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
	char (*ids)[REG_LABEL_MAX + 1];
	size_t n, cap;
} ids_t;

static int collect(const reg_machine_t *m, void *arg)
{
	ids_t *l = arg;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 1024;
		l->ids = realloc(l->ids, l->cap * sizeof(*l->ids));
	}
	snprintf(l->ids[l->n++], REG_LABEL_MAX + 1, "%s", m->id);
	return 0;
}

typedef struct {
	const char *id;
	bool start;
	double work;
} op_t;

static int apply(reg_txn_t *t, void *arg)
{
	op_t *op = arg;
	double t0 = now();
	int rc = reg_set_state(t, op->id, op->start ? "started" : "stopped");
	op->work = now() - t0;
	return rc;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void run(const char *db, unsigned flags, size_t n, const ids_t *ids, const char *label)
{
	reg_t *reg;
	if (reg_open(&reg, db, flags, 0)) {
		fprintf(stderr, "startstop: cannot open %s\n", db);
		exit(1);
	}
	double *work = calloc(n, sizeof(double)), *commit = calloc(n, sizeof(double));
	srand(7);
	for (size_t i = 0; i < n; i++) {
		op_t op = {ids->ids[(size_t)rand() % ids->n], false, 0};
		for (int k = 0; k < 2; k++, op.start = true) { /* stop, then start again */
			double t0 = now();
			if (reg_write(reg, apply, &op)) {
				fprintf(stderr, "startstop: write failed\n");
				exit(1);
			}
			if (k == 0) {
				work[i] = op.work * 1e3;
				commit[i] = (now() - t0 - op.work) * 1e3;
			}
		}
	}
	qsort(work, n, sizeof(double), cmp);
	qsort(commit, n, sizeof(double), cmp);
	printf("%-12s %5zu stops: index work median %.3f ms, p99 %.3f ms; commit median %.3f ms, "
	       "p99 %.3f ms\n",
	       label, n, work[n / 2], work[n * 99 / 100], commit[n / 2], commit[n * 99 / 100]);
	free(work), free(commit);
	reg_close(reg);
}

typedef struct {
	const ids_t *ids;
	size_t k;
	unsigned seed;
} batch_t;

/* k random Machines each flipped (stopped <-> started), as a record put. */
static int flip_batch(reg_txn_t *t, void *arg)
{
	batch_t *b = arg;
	unsigned seed = b->seed; /* reg_write may run this again: the same Machines */
	for (size_t i = 0; i < b->k; i++) {
		reg_machine_buf_t m;
		int rc = reg_get_machine(t, b->ids->ids[(size_t)rand_r(&seed) % b->ids->n], &m);
		if (rc)
			return rc;
		m.m.state = strcmp(m.state, "started") == 0 ? "stopped" : "started";
		if ((rc = reg_put_machine(t, &m.m)))
			return rc;
	}
	return 0;
}

static double cpu_s(void)
{
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	       (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static void run_batches(const char *db, size_t n, size_t k, const ids_t *ids)
{
	reg_t *reg;
	if (reg_open(&reg, db, REG_WRITEMAP, 0)) {
		fprintf(stderr, "startstop: cannot open %s\n", db);
		exit(1);
	}
	batch_t b = {ids, k, 11};
	double t0 = now(), c0 = cpu_s();
	for (size_t done = 0; done < n; done += k, b.seed++)
		if (reg_write(reg, flip_batch, &b)) {
			fprintf(stderr, "startstop: write failed\n");
			exit(1);
		}
	double wall = now() - t0, cpu = cpu_s() - c0;
	size_t total = (n + k - 1) / k * k;
	printf("batches:     %zu start/stops in transactions of %zu, with fsync: %.0f changes/s, "
	       "%.1f us of CPU a change\n",
	       total, k, (double)total / wall, cpu * 1e6 / (double)total);
	reg_close(reg);
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4)
		return fprintf(stderr, "usage: startstop DB N [BATCH]\n"), 2;
	reg_t *reg;
	reg_txn_t *t;
	ids_t ids = {0};
	if (reg_open(&reg, argv[1], REG_RDONLY, 0) || reg_txn_begin(reg, false, &t))
		return fprintf(stderr, "startstop: cannot open %s\n", argv[1]), 1;
	reg_walk_machines(t, collect, &ids);
	reg_txn_abort(t);
	reg_close(reg);
	printf("%zu Machines\n", ids.n);
	size_t n = (size_t)atol(argv[2]);
	run(argv[1], REG_NOSYNC, n, &ids, "no fsync:");
	run(argv[1], 0, n / 10 ? n / 10 : 1, &ids, "with fsync:");
	if (argc == 4 && atol(argv[3]) > 0)
		run_batches(argv[1], n, (size_t)atol(argv[3]), &ids);
	free(ids.ids);
	return 0;
}
