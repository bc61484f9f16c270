/*
 * internalctl's registry commands: import, upgrade, export, machine, ls, zone, check and
 * stats. Each parses its own arguments, then calls the registry, jsonl and zone modules;
 * nothing here knows the key layout. The fleet's commands are in ctl_fleet.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ctl_impl.h"
#include "jsonl.h"
#include "org.h"
#include "registry.h"
#include "version.h"
#include "zone.h"

int ctl_open_reg(const cli_t *c, bool write, reg_t **reg)
{
	int rc = reg_open(reg, c->db, write ? c->flags : REG_RDONLY, 0);
	if (rc) {
		fprintf(stderr, "internalctl: cannot open the registry at %s: %s%s\n", c->db,
		        reg_strerror(rc),
		        rc == -ENOENT ? " (create it with 'internalctl import FILE')" : "");
		return EXIT_REFUSED;
	}
	return 0;
}

/* ---- import / export -------------------------------------------------------------------- */

/* What a writer creates: a refused import into a new --db must leave nothing behind. */
typedef struct {
	bool dir, files; /* the directory / data.mdb did not exist before */
} created_t;

static bool exists(const char *dir, const char *file)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s%s%s", dir, file ? "/" : "", file ? file : "");
	return access(path, F_OK) == 0;
}

static created_t will_create(const char *dir)
{
	return (created_t){.dir = !exists(dir, NULL), .files = !exists(dir, "data.mdb")};
}

static void remove_created(const char *dir, created_t cr)
{
	char path[4096];
	if (!cr.files)
		return;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	if (cr.dir)
		rmdir(dir);
}

typedef struct {
	jsonl_t **files;
	size_t n;
	bool replace;
	bool upgrade;
	int upgraded; /* reg_upgrade's result */
	char *err;
} import_t;

/* Every file in one transaction: a later file may name an earlier one's orgs and regions. */
static int import_fn(reg_txn_t *txn, void *arg)
{
	import_t *im = arg;
	int rc;
	im->err[0] = '\0';
	if (im->upgrade && (rc = im->upgraded = reg_upgrade(txn)) < 0)
		return rc;
	for (size_t i = 0; i < im->n; i++)
		if ((rc = jsonl_apply(txn, im->files[i], im->replace && i == 0, im->err)))
			return rc;
	if (im->upgrade && (rc = jsonl_check_regions(txn, im->err)))
		return rc;
	return 0;
}

/* Parses every file (FILE... or - for standard input) before the registry is opened. */
static int parse_files(const cli_t *c, int first, import_t *im, char *err)
{
	im->files = calloc((size_t)c->argc, sizeof(*im->files));
	if (!im->files)
		return -ENOMEM;
	for (int i = first; i < c->argc; i++) {
		const char *file = c->argv[i];
		bool std = strcmp(file, "-") == 0;
		if (strcmp(file, "--replace") == 0)
			continue; /* import's flag, wherever it is */
		FILE *f = std ? stdin : fopen(file, "r");
		if (!f) {
			snprintf(err, JSONL_ERR_MAX, "%s: %s", file, strerror(errno));
			return -errno;
		}
		int rc = jsonl_parse(f, std ? "<stdin>" : file, &im->files[im->n], err);
		if (!std)
			fclose(f);
		if (rc)
			return rc;
		im->n++;
	}
	return 0;
}

static void free_files(import_t *im)
{
	for (size_t i = 0; i < im->n; i++)
		jsonl_free(im->files[i]);
	free(im->files);
}

int ctl_import(cli_t *c)
{
	int first = 1, files = 0;
	bool replace = false;
	for (int i = first; i < c->argc; i++)
		if (strcmp(c->argv[i], "--replace") == 0)
			replace = true;
		else if (ctl_is_file_arg(c->argv[i]))
			files++;
		else
			return ctl_stray("import", c->argv[i]);
	if (files == 0)
		return ctl_cmd_usage("import", "needs a file (or - for standard input)");
	char err[JSONL_ERR_MAX] = "";
	import_t im = {.replace = replace, .err = err};
	double t0 = clock_mono_s();
	int rc = parse_files(c, first, &im, err);
	reg_t *reg = NULL;
	created_t cr = will_create(c->db);
	if (!rc && (rc = ctl_open_reg(c, true, &reg))) {
		free_files(&im);
		return rc;
	}
	size_t records = 0;
	for (size_t i = 0; i < im.n; i++)
		records += jsonl_count(im.files[i]);
	if (!rc) {
		double t1 = clock_mono_s();
		reg_txn_t *txn;
		rc = reg_write(reg, import_fn, &im);
		if (!rc && reg_txn_begin(reg, false, &txn) == 0) {
			fprintf(stderr,
			        "internalctl: imported %zu records in %.2f s (parse %.2f s, write "
			        "%.2f s); generation %llu\n",
			        records, clock_mono_s() - t0, t1 - t0, clock_mono_s() - t1,
			        (unsigned long long)reg_generation(txn));
			reg_txn_abort(txn);
		}
	}
	free_files(&im);
	if (rc && err[0])
		fprintf(stderr, "internalctl: %s\n", err);
	else if (rc) /* the registry's own failure (a full disk): say which registry */
		fprintf(stderr, "internalctl: cannot write the registry at %s: %s%s\n", c->db,
		        reg_strerror(rc),
		        rc == -ENOSPC ? " (free space on its file system and import again)" : "");
	if (rc)
		fprintf(stderr, "internalctl: nothing was imported; the registry is unchanged\n");
	reg_close(reg);
	if (rc)
		remove_created(c->db, cr);
	return rc ? EXIT_REFUSED : 0;
}

/* upgrade [FILE...]: a registry of schema 3 or 4 converted in place, in one transaction
 * with FILE... (schema 3 had no regions: give zones/regions.jsonl). */
int ctl_upgrade(cli_t *c)
{
	for (int i = 1; i < c->argc; i++)
		if (!ctl_is_file_arg(c->argv[i]))
			return ctl_stray("upgrade", c->argv[i]);
	char err[JSONL_ERR_MAX] = "";
	import_t im = {.upgrade = true, .err = err};
	int rc = parse_files(c, 1, &im, err);
	reg_t *reg = NULL;
	if (!rc && !exists(c->db, "data.mdb")) {
		fprintf(stderr, "internalctl: no registry at %s to upgrade\n", c->db);
		free_files(&im);
		return EXIT_REFUSED;
	}
	if (!rc && (rc = reg_open(&reg, c->db, c->flags | REG_UPGRADE, 0))) {
		fprintf(stderr, "internalctl: cannot open the registry at %s: %s\n", c->db,
		        reg_strerror(rc));
		free_files(&im);
		return EXIT_REFUSED;
	}
	if (!rc)
		rc = reg_write(reg, import_fn, &im);
	free_files(&im);
	reg_close(reg);
	if (rc) {
		fprintf(stderr,
		        "internalctl: upgrade: %s\ninternalctl: nothing was changed; the registry "
		        "is as it was\n",
		        err[0] ? err : reg_strerror(rc));
		return EXIT_REFUSED;
	}
	if (im.upgraded == 0)
		fprintf(stderr, "internalctl: the registry at %s is already current%s\n", c->db,
		        im.n ? "; the files were imported" : "");
	else
		fprintf(stderr, "internalctl: upgraded the registry at %s in place\n", c->db);
	return 0;
}

static int with_read_txn(const cli_t *c, int (*fn)(const cli_t *, reg_txn_t *))
{
	reg_t *reg;
	reg_txn_t *txn;
	int rc = ctl_open_reg(c, false, &reg);
	if (rc)
		return rc;
	rc = reg_txn_begin(reg, false, &txn);
	if (rc) {
		fprintf(stderr, "internalctl: %s\n", reg_strerror(rc));
		reg_close(reg);
		return EXIT_REFUSED;
	}
	rc = fn(c, txn);
	reg_txn_abort(txn);
	reg_close(reg);
	return rc;
}

static int do_export(const cli_t *c, reg_txn_t *txn)
{
	(void)c;
	int rc = jsonl_export(txn, stdout);
	if (rc)
		fprintf(stderr, "internalctl: export: %s\n", reg_strerror(rc));
	return rc ? EXIT_REFUSED : 0;
}

/* ---- machine start|stop|delete ---------------------------------------------------------- */

typedef struct {
	const char *op, *id;
	double work; /* seconds inside the transaction, before its commit */
} machine_op_t;

static int machine_fn(reg_txn_t *txn, void *arg)
{
	machine_op_t *m = arg;
	double t0 = clock_mono_s();
	int rc = strcmp(m->op, "delete") == 0
	                 ? reg_delete_machine(txn, m->id)
	                 : reg_set_state(txn, m->id,
	                                 strcmp(m->op, "start") == 0 ? "started" : "stopped");
	m->work = clock_mono_s() - t0;
	return rc;
}

int ctl_machine(cli_t *c)
{
	for (int i = 1; i < c->argc; i++)
		if (c->argv[i][0] == '-') /* no id starts with '-' */
			return ctl_stray("machine", c->argv[i]);
	if (c->argc < 3)
		return ctl_cmd_usage("machine", "takes start, stop or delete and a Machine id");
	if (c->argc > 3)
		return ctl_stray("machine", c->argv[3]);
	/* ids are stored lower-cased, as import lower-cases them: 148E1D0A2C5D89 is one */
	for (char *p = c->argv[2]; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	machine_op_t m = {c->argv[1], c->argv[2], 0};
	if (strcmp(m.op, "start") && strcmp(m.op, "stop") && strcmp(m.op, "delete"))
		return ctl_cmd_usage("machine", "takes start, stop or delete, not '%s'", m.op);
	reg_t *reg;
	int rc = ctl_open_reg(c, true, &reg);
	if (rc)
		return rc;
	double t0 = clock_mono_s();
	rc = reg_write(reg, machine_fn, &m);
	double dt = clock_mono_s() - t0;
	reg_close(reg);
	if (rc == -ENOENT) {
		fprintf(stderr, "internalctl: no Machine with id %s\n", m.id);
		return EXIT_REFUSED;
	}
	if (rc == -EADDRINUSE) {
		fprintf(stderr, "internalctl: cannot start %s: %s\n", m.id, reg_strerror(rc));
		return EXIT_REFUSED;
	}
	if (rc) {
		fprintf(stderr, "internalctl: machine %s %s: %s\n", m.op, m.id, reg_strerror(rc));
		return EXIT_REFUSED;
	}
	fprintf(stderr,
	        "internalctl: machine %s %s: done in %.3f ms (indexes %.3f ms, commit %.3f ms%s)\n",
	        m.op, m.id, dt * 1e3, m.work * 1e3, (dt - m.work) * 1e3,
	        c->flags & REG_NOSYNC ? ", no fsync" : " with fsync");
	return 0;
}

/* ---- ls ------------------------------------------------------------------------------------ */

/* A table printed with aligned columns in two passes over the same rows (one read
 * transaction): the first measures each column, the second prints. No row is held, so a
 * million Machines are listed in the memory of one. */
#define COLS 8
typedef struct {
	size_t w[COLS], ncols;
	bool printing;
} table_t;

static void row(table_t *t, ...)
{
	va_list ap;
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);
		if (!s)
			s = "";
		if (!t->printing) {
			size_t n = strlen(s);
			t->w[i] = n > t->w[i] ? n : t->w[i];
		} else if (i + 1 < t->ncols) {
			ctl_out("%-*s  ", (int)t->w[i], s);
		} else {
			ctl_out("%s\n", s);
		}
	}
	va_end(ap);
}

typedef struct {
	table_t t;
	reg_txn_t *txn;
	bool has_org;
	uint32_t org;
} ls_t;

static void slug_of(reg_txn_t *txn, uint32_t net, char *buf)
{
	if (reg_org_slug(txn, net, buf, REG_LABEL_MAX + 1))
		snprintf(buf, REG_LABEL_MAX + 1, "?");
}

static int ls_org(const char *slug, size_t len, uint32_t net, void *arg)
{
	ls_t *l = arg;
	char s[REG_LABEL_MAX + 1], ip[INET6_ADDRSTRLEN], netw[INET6_ADDRSTRLEN + 4];
	uint8_t p[16];
	if (l->has_org && net != l->org)
		return 0;
	snprintf(s, sizeof(s), "%.*s", (int)len, slug);
	org_prefix_of(net, p);
	inet_ntop(AF_INET6, p, ip, sizeof(ip));
	snprintf(netw, sizeof(netw), "%s/48", ip);
	row(&l->t, s, netw);
	return 0;
}

static int ls_machine(const reg_machine_t *m, void *arg)
{
	ls_t *l = arg;
	char org[REG_LABEL_MAX + 1], ip[INET6_ADDRSTRLEN];
	if (l->has_org && m->net != l->org)
		return 0;
	slug_of(l->txn, m->net, org);
	inet_ntop(AF_INET6, m->ip, ip, sizeof(ip));
	row(&l->t, m->id, org, m->app, m->region, m->group, m->state, ip);
	return 0;
}

static int ls_peer(const reg_hit_t *h, void *arg)
{
	ls_t *l = arg;
	char org[REG_LABEL_MAX + 1], ip[INET6_ADDRSTRLEN], name[REG_LABEL_MAX + 1];
	char region[REG_LABEL_MAX + 1];
	if (l->has_org && h->net != l->org)
		return 0;
	slug_of(l->txn, h->net, org);
	inet_ntop(AF_INET6, h->ip, ip, sizeof(ip));
	snprintf(name, sizeof(name), "%.*s", h->id_len, h->id);
	snprintf(region, sizeof(region), "%.*s", h->region_len, h->region);
	row(&l->t, org, name, region, ip);
	return 0;
}

/* apps: one row per (org, app) named by a Machine or a Flycast address */
typedef struct {
	uint32_t net;
	char app[REG_LABEL_MAX + 1];
	unsigned machines, started, flycast;
} app_row_t;

typedef struct {
	app_row_t *rows;
	size_t n, cap;
	bool has_org, oom; /* oom: a walk stopped short (a callback's 1 ends it quietly) */
	uint32_t org;
} apps_t;

static app_row_t *app_row(apps_t *a, uint32_t net, const char *app, size_t len)
{
	if (a->n && a->rows[a->n - 1].net == net && strlen(a->rows[a->n - 1].app) == len &&
	    memcmp(a->rows[a->n - 1].app, app, len) == 0)
		return &a->rows[a->n - 1];
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 64;
		void *p = realloc(a->rows, cap * sizeof(*a->rows));
		if (!p)
			return NULL;
		a->rows = p, a->cap = cap;
	}
	app_row_t *r = &a->rows[a->n++];
	memset(r, 0, sizeof(*r));
	r->net = net;
	memcpy(r->app, app, len);
	return r;
}

static int apps_machine(const reg_machine_t *m, void *arg)
{
	apps_t *a = arg;
	if (a->has_org && m->net != a->org)
		return 0;
	app_row_t *r = app_row(a, m->net, m->app, strlen(m->app));
	if (!r) {
		a->oom = true;
		return 1;
	}
	r->machines++;
	r->started += strcmp(m->state, "started") == 0;
	return 0;
}

static int apps_flycast(const reg_hit_t *h, void *arg)
{
	apps_t *a = arg;
	if (a->has_org && h->net != a->org)
		return 0;
	app_row_t *r = app_row(a, h->net, h->app, h->app_len);
	if (!r) {
		a->oom = true;
		return 1;
	}
	r->flycast++;
	return 0;
}

static int cmp_app_row(const void *x, const void *y)
{
	const app_row_t *a = x, *b = y;
	if (a->net != b->net)
		return a->net < b->net ? -1 : 1;
	return strcmp(a->app, b->app);
}

static int ls_apps(ls_t *l)
{
	apps_t a = {.has_org = l->has_org, .org = l->org};
	int rc = reg_walk_machines(l->txn, apps_machine, &a);
	if (rc >= 0 && !a.oom)
		rc = reg_walk_all_flycast(l->txn, apps_flycast, &a);
	if (rc < 0 || a.oom) {
		free(a.rows);
		return rc < 0 ? rc : -ENOMEM;
	}
	qsort(a.rows, a.n, sizeof(*a.rows), cmp_app_row);
	/* rows of one app may be split (Machines, then Flycast): merge neighbours */
	size_t n = 0;
	for (size_t i = 0; i < a.n; i++) {
		app_row_t *last = n ? &a.rows[n - 1] : NULL;
		if (last && last->net == a.rows[i].net && strcmp(last->app, a.rows[i].app) == 0) {
			last->machines += a.rows[i].machines, last->started += a.rows[i].started;
			last->flycast += a.rows[i].flycast;
		} else {
			a.rows[n++] = a.rows[i];
		}
	}
	for (int pass = 0; pass < 2; pass++) {
		l->t.printing = pass == 1;
		row(&l->t, "ORG", "APP", "MACHINES", "STARTED", "FLYCAST");
		for (size_t i = 0; i < n; i++) {
			const app_row_t *r = &a.rows[i];
			char org[REG_LABEL_MAX + 1], m[16], st[16], f[16];
			slug_of(l->txn, r->net, org);
			snprintf(m, sizeof(m), "%u", r->machines);
			snprintf(st, sizeof(st), "%u", r->started);
			snprintf(f, sizeof(f), "%u", r->flycast);
			row(&l->t, org, r->app, m, st, f);
		}
	}
	free(a.rows);
	return 0;
}

static const char *const ls_kinds[] = {"orgs", "apps", "machines", "peers", "regions"};

/* ls WHAT [--org SLUG], zone [--org SLUG] [--ttl N]: every argument is understood or a
 * usage error, before the registry is opened. 0, or an exit code. */
static int parse_view(cli_t *c)
{
	const char *cmd = c->argv[0];
	bool ls = strcmp(cmd, "ls") == 0;
	c->ttl = 5;
	for (int i = 1; i < c->argc; i++) {
		const char *a = c->argv[i];
		bool org = strcmp(a, "--org") == 0, ttl = !ls && strcmp(a, "--ttl") == 0;
		if (org || ttl) {
			if (i + 1 == c->argc)
				return ctl_cmd_usage(cmd, "%s needs a value (%s)", a,
				                     org ? "an org's slug" : "seconds");
			const char *v = c->argv[++i];
			if (org) {
				c->org = v;
				continue;
			}
			char *end;
			errno = 0;
			unsigned long t = strtoul(v, &end, 10);
			if (!*v || *end || v[0] == '-' || errno ||
			    t > 2147483647UL) /* RFC 2181 §8 */
				return ctl_cmd_usage(cmd, "--ttl %s: want seconds, 0 to 2147483647",
				                     v);
			c->ttl = (uint32_t)t;
		} else if (ls && !c->what && a[0] != '-') {
			c->what = a;
		} else {
			return ctl_stray(cmd, a);
		}
	}
	if (!ls)
		return 0;
	if (!c->what)
		return ctl_cmd_usage(cmd, "takes orgs, apps, machines, peers or regions");
	if (c->org && strcmp(c->what, "regions") == 0) /* a flag that would do nothing */
		return ctl_cmd_usage(cmd, "--org does not apply to regions: they belong to no org");
	for (size_t i = 0; i < sizeof(ls_kinds) / sizeof(ls_kinds[0]); i++)
		if (strcmp(c->what, ls_kinds[i]) == 0)
			return 0;
	return ctl_cmd_usage(cmd, "takes orgs, apps, machines, peers or regions, not '%s'",
	                     c->what);
}

static int resolve_org(reg_txn_t *txn, const char *slug, uint32_t *net)
{
	if (reg_org_net(txn, slug, strlen(slug), net) == 0)
		return 0;
	fprintf(stderr, "internalctl: no org '%s' in the registry\n", slug);
	return EXIT_REFUSED;
}

static int ls_region(const reg_region_t *r, void *arg)
{
	ls_t *l = arg;
	char code[REG_LABEL_MAX + 1], name[REG_REGION_NAME_MAX + 1], lat[32], lon[32];
	snprintf(code, sizeof(code), "%.*s", r->code_len, r->code);
	snprintf(name, sizeof(name), "%.*s", r->name_len, r->name);
	snprintf(lat, sizeof(lat), "%.4f", r->lat);
	snprintf(lon, sizeof(lon), "%.4f", r->lon);
	row(&l->t, code, lat, lon, name);
	return 0;
}

static int do_ls(const cli_t *c, reg_txn_t *txn)
{
	const char *what = c->what, *org = c->org;
	ls_t l = {.txn = txn, .has_org = org != NULL};
	if (org && resolve_org(txn, org, &l.org))
		return EXIT_REFUSED;
	int rc = 0;
	if (strcmp(what, "apps") == 0) {
		l.t.ncols = 5;
		rc = ls_apps(&l); /* its two passes are over its own per-app counts */
	} else {
		for (int pass = 0; pass < 2 && rc >= 0; pass++) {
			l.t.printing = pass == 1;
			if (strcmp(what, "orgs") == 0) {
				l.t.ncols = 2;
				row(&l.t, "ORG", "NETWORK");
				rc = reg_walk_orgs(txn, ls_org, &l);
			} else if (strcmp(what, "machines") == 0) {
				l.t.ncols = 7;
				row(&l.t, "ID", "ORG", "APP", "REGION", "GROUP", "STATE",
				    "PRIVATE_IP");
				rc = reg_walk_machines(txn, ls_machine, &l);
			} else if (strcmp(what, "peers") == 0) {
				l.t.ncols = 4;
				row(&l.t, "ORG", "NAME", "REGION", "IP");
				rc = reg_walk_all_peers(txn, ls_peer, &l);
			} else if (strcmp(what, "regions") == 0) {
				l.t.ncols = 4;
				row(&l.t, "REGION", "LAT", "LON", "NAME");
				rc = reg_walk_regions(txn, ls_region, &l);
			} else {
				return EXIT_USAGE; /* parse_view let no other through */
			}
		}
	}
	if (rc < 0) {
		fprintf(stderr, "internalctl: ls %s: %s\n", what, reg_strerror(rc));
		return EXIT_REFUSED;
	}
	return 0;
}

/* ---- zone, check, stats ------------------------------------------------------------------- */

static int only_org(const char *slug, size_t len, uint32_t net, void *arg)
{
	(void)slug, (void)len;
	*(uint32_t *)arg = net;
	return 0;
}

static int do_zone(const cli_t *c, reg_txn_t *txn)
{
	const char *org = c->org;
	uint32_t net = 0, ttl = c->ttl;
	if (org) {
		if (resolve_org(txn, org, &net))
			return EXIT_REFUSED;
	} else {
		int n = reg_walk_orgs(txn, only_org, &net);
		if (n != 1) {
			fprintf(stderr,
			        "internalctl: zone: the registry holds %d orgs; name one with "
			        "--org SLUG\n",
			        n);
			return EXIT_REFUSED;
		}
	}
	int rc = zone_write(txn, net, ttl, stdout);
	if (rc) {
		fprintf(stderr, "internalctl: zone: %s\n", reg_strerror(rc));
		return EXIT_REFUSED;
	}
	return 0;
}

static void report(const char *msg, void *arg)
{
	(*(unsigned *)arg)++;
	fprintf(stderr, "internalctl: check: %s\n", msg);
}

static int do_check(const cli_t *c, reg_txn_t *txn)
{
	(void)c;
	unsigned n = 0;
	double t0 = clock_mono_s();
	int rc = reg_check(txn, report, &n);
	if (rc < 0) {
		fprintf(stderr, "internalctl: check: %s\n", reg_strerror(rc));
		return EXIT_REFUSED;
	}
	if (rc > 0) {
		fprintf(stderr, "internalctl: check: %d mismatches\n", rc);
		return EXIT_REFUSED;
	}
	ctl_out("ok: every index matches the records (%.2f s)\n", clock_mono_s() - t0);
	return 0;
}

static int do_stats(const cli_t *c, reg_txn_t *txn)
{
	(void)c;
	reg_stats_t s;
	int rc = reg_stats(txn, &s);
	if (rc) {
		fprintf(stderr, "internalctl: stats: %s\n", reg_strerror(rc));
		return EXIT_REFUSED;
	}
	ctl_out("generation     %llu\n", (unsigned long long)s.generation);
	ctl_out("orgs           %zu\n", s.orgs);
	ctl_out("machines       %zu (%zu started)\n", s.machines, s.started);
	ctl_out("peers          %zu\n", s.peers);
	ctl_out("flycast        %zu\n", s.flycast);
	ctl_out("regions        %zu\n", s.regions);
	ctl_out("index entries  %zu\n", s.index_entries);
	ctl_out("map used       %.1f MiB (%zu pages of %zu bytes)\n", s.map_used / 1048576.0,
	        s.map_used / (s.page_size ? s.page_size : 1), s.page_size);
	reg_follow_t f;
	if (reg_get_follow(txn, &f) == 0) {
		char when[64] = "never";
		time_t t = (time_t)(f.applied_ns / 1000000000ULL);
		struct tm tm;
		if (f.applied_ns && gmtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		ctl_out("follows        bucket %s (stream %s)\n", f.bucket,
		        f.stream[0] ? f.stream : "-");
		if (!f.synced) {
			ctl_out("synced         no: waiting for the first full sync\n");
			return 0;
		}
		ctl_out("last applied   seq %llu at %s\n", (unsigned long long)f.seq, when);
		ctl_out("bucket head    seq %llu (lag %llu changes)\n", (unsigned long long)f.head,
		        (unsigned long long)(f.head > f.seq ? f.head - f.seq : 0));
		char contact[64] = "never";
		t = (time_t)(f.contact_ns / 1000000000ULL);
		if (f.contact_ns && gmtime_r(&t, &tm))
			strftime(contact, sizeof(contact), "%Y-%m-%dT%H:%M:%SZ", &tm);
		double ago = (double)clock_wall_ns() / 1e9 - (double)f.contact_ns / 1e9;
		if (f.contact_ns)
			ctl_out("last contact   %s (%.1f s ago)\n", contact, ago);
		else
			ctl_out("last contact   never\n");
	}
	return 0;
}

/* ---- the commands the table names ------------------------------------------------------- */

int ctl_export(cli_t *c)
{
	return ctl_no_args(c) ? EXIT_USAGE : with_read_txn(c, do_export);
}

int ctl_ls(cli_t *c)
{
	return parse_view(c) ? EXIT_USAGE : with_read_txn(c, do_ls);
}

int ctl_zone(cli_t *c)
{
	return parse_view(c) ? EXIT_USAGE : with_read_txn(c, do_zone);
}

int ctl_check(cli_t *c)
{
	return ctl_no_args(c) ? EXIT_USAGE : with_read_txn(c, do_check);
}

int ctl_stats(cli_t *c)
{
	return ctl_no_args(c) ? EXIT_USAGE : with_read_txn(c, do_stats);
}
