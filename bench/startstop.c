/*
 * bench/startstop — the cost of one Machine start or stop in a large registry, as a
 * long-running writer (the replication agent) pays it: one process, the registry
 * opened once, N transactions each stopping or starting one Machine picked at random.
 * Reports the median and p99 of the index work (inside the transaction) and of the
 * commit, without fsync (REG_NOSYNC) and, for a few, with it.
 *
 *   build/startstop DB N
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv)
{
	if (argc != 3)
		return fprintf(stderr, "usage: startstop DB N\n"), 2;
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
	free(ids.ids);
	return 0;
}
