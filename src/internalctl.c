/*
 * internalctl — the registry's writer and inspector. Parses arguments and calls the
 * registry, jsonl and zone modules; nothing here knows the key layout.
 *
 * Exit codes: 0 done, 1 refused input or a failed operation, 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "follow.h"
#include "jsonl.h"
#include "log.h"
#include "metrics_http.h"
#include "org.h"
#include "publish.h"
#include "registry.h"
#include "version.h"
#include "zone.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE   2

static const char *const usage_text =
        "usage: internalctl [--db DIR] [--no-sync] COMMAND [ARGS]\n"
        "       internalctl --version\n"
        "\n"
        "commands:\n"
        "  import [--replace] FILE...  upsert every record of JSON Lines files (- is stdin;\n"
        "                              one transaction)\n"
        "  export                      the whole registry as JSON Lines on stdout\n"
        "  upgrade [FILE...]           convert a registry of schema 3 or 4 in place\n"
        "  machine start|stop|delete ID\n"
        "  ls orgs|apps|machines|peers [--org SLUG] | ls regions\n"
        "  zone [--org SLUG] [--ttl N] the org's .internal names as a zone file\n"
        "  check                       verify every index against the records (exit 1 if not)\n"
        "  stats                       record counts, generation, map use\n"
        "  publish [--nats URL]... [--bucket NAME] [--replicas N] [--ack-wait S] [--replace]\n"
        "          FILE|-\n"
        "                              validate a file against the fleet's bucket, then write it\n"
        "  follow [--nats URL]... [--bucket NAME] [--batch N] [--js-domain D]\n"
        "         [--sync-spread S]\n"
        "                              mirror the fleet's bucket into this registry (a daemon)\n"
        "  mirror [--nats URL]... [--js-domain D] [--bucket NAME] [--replicas N]\n"
        "         --from-domain HUB    create a region's mirror of the hub's bucket\n"
        "  (publish and follow: --tls-ca, --tls-cert, --tls-key, --nats-user,\n"
        "   --nats-password-file, --nats-token-file, --creds, --nkey; NATS_URL)\n"
        "\n"
        "--db DIR (or --db=DIR) defaults to /var/lib/internald; it and --no-sync may also\n"
        "follow the command. 'internalctl COMMAND --help' for one command.\n";

#define NATS_HELP                                                                                  \
	"NATS: --nats URL (nats:// or tls://; default: $NATS_URL, a comma list, else\n"            \
	"nats://127.0.0.1:4222), --tls-ca FILE, --tls-cert FILE --tls-key FILE, and one of\n"      \
	"--nats-user NAME --nats-password-file FILE, --nats-token-file FILE, --creds FILE,\n"      \
	"--nkey FILE (secrets only from files).\n"

static const char *const help_text[][2] = {
        {"import", "usage: internalctl import [--replace] FILE...\n"
                   "Validates every file (- is standard input), then writes them in one\n"
                   "transaction, in order: all or nothing; a refused import creates nothing.\n"
                   "--replace: the files become the whole registry.\n"},
        {"upgrade", "usage: internalctl upgrade [FILE...]\n"
                    "Converts a registry written by an earlier release (schema 3 or 4) in\n"
                    "place, in one transaction with FILE... Schema 4 needs no file; schema 3\n"
                    "held no regions: give zones/regions.jsonl (every Machine and peer must\n"
                    "name a region record). Exit 0 also when already current.\n"},
        {"export", "usage: internalctl export\nWrites every record as JSON Lines; "
                   "import --replace of it gives the same registry.\n"},
        {"machine", "usage: internalctl machine start|stop|delete ID\n"},
        {"ls", "usage: internalctl ls orgs|apps|machines|peers [--org SLUG]\n"
               "       internalctl ls regions\n"
               "--org SLUG: only that org's rows (not for regions, which belong to no org).\n"},
        {"zone", "usage: internalctl zone [--org SLUG] [--ttl SECONDS]\n"
                 "Prints the org's .internal names (no nearest, PTR or .flycast) as a zone file.\n"
                 "--org may be left out when the registry holds one org. TTL defaults to 5.\n"},
        {"check",
         "usage: internalctl check\nExit 0 if every index matches the records, 1 if not.\n"},
        {"stats", "usage: internalctl stats\n"},
        {"publish",
         "usage: internalctl publish [--nats URL]... [--bucket NAME] [--replicas N]\n"
         "                          [--ack-wait SECONDS] [--replace] FILE|-\n"
         "Validates the whole file as import does, against the bucket's content, then puts\n"
         "every record under its key; \"op\":\"delete\" records become KV deletes.\n"
         "--replace: also delete every key the file lacks. Refused input writes nothing.\n"
         "--nats defaults to nats://127.0.0.1:4222, --bucket to internal (1 to 63 letters,\n"
         "digits, '-' and '_'); --replicas (default 1) applies when the bucket is created.\n"
         "--ack-wait (1 to 3600, default 30) bounds each wait for the server's\n"
         "acknowledgements.\n" NATS_HELP},
        {"follow", "usage: internalctl follow [--nats URL]... [--bucket NAME] [--batch N]\n"
                   "                         [--js-domain D] [--sync-spread SECONDS]\n"
                   "                         [--metrics ADDR] [--stale-after SECONDS]\n"
                   "Mirrors the bucket into the registry until SIGTERM or SIGINT: a full sync\n"
                   "when needed, then batches of at most N changes (default 100000), each one\n"
                   "transaction that also stores the stream position.\n"
                   "--js-domain D: the bucket of JetStream domain D (a region's mirror) rather\n"
                   "than the connected server's. --sync-spread S: a full sync starts after a\n"
                   "random delay of up to S seconds (0: none; default 1 s per 20000 messages,\n"
                   "at most 30), so that followers syncing at once spread their reads.\n"
                   "--metrics: serve /metrics, /health (503 past --stale-after, default 10 s,\n"
                   "without NATS or progress) and /ready (503 before the first full sync) on "
                   "ADDR.\n" NATS_HELP},
        {"mirror",
         "usage: internalctl mirror [--nats URL]... [--js-domain D] [--bucket NAME]\n"
         "                          [--replicas N] --from-domain HUB\n"
         "Creates the bucket (default internal) in the JetStream domain of the server\n"
         "connected to (or D) as a mirror of the bucket of the same name in domain HUB,\n"
         "which the server fills over its leaf node connection, keeping the hub's stream\n"
         "sequences. Exit 0 also when that mirror exists; 1 when the bucket exists and\n"
         "is not that mirror. --replicas (1 to 5, default 1) within the domain.\n" NATS_HELP},
};

typedef struct {
	const char *db;
	unsigned flags;
	int argc;
	char **argv;
	/* ls and zone's arguments, parsed before the registry is opened */
	const char *what, *org;
	uint32_t ttl;
} cli_t;

static int usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "internalctl: %s\n", msg);
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

/* errno of the first write to standard output that failed, 0 if none did: stdio keeps
 * only an error flag, and a later fflush may even succeed (the failed buffer dropped). */
static int out_errno;

/* printf, remembering why the first failed write failed (finish_output reports it). */
static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vprintf(fmt, ap) < 0 && !out_errno)
		out_errno = errno ? errno : EIO;
	va_end(ap);
}

static const char *help_of(const char *cmd)
{
	for (size_t i = 0; i < sizeof(help_text) / sizeof(help_text[0]); i++)
		if (strcmp(help_text[i][0], cmd) == 0)
			return help_text[i][1];
	return NULL;
}

/* A usage error of one command: the message, then that command's usage line. */
static int cmd_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cmd_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	const char *h = help_of(cmd);
	fprintf(stderr, "internalctl: %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (h)
		fprintf(stderr, "%.*s\n", (int)strcspn(h, "\n"), h);
	return EXIT_USAGE;
}

/* An argument the command does not take: a usage error naming it. */
static int stray(const char *cmd, const char *arg)
{
	if (arg[0] == '-' && arg[1])
		return cmd_usage(cmd, "unknown option '%s'", arg);
	return cmd_usage(cmd, "unexpected argument '%s'", arg);
}

/* export, check, stats: no arguments (a stray one may be a misplaced option). */
static int no_args(const cli_t *c)
{
	return c->argc > 1 ? stray(c->argv[0], c->argv[1]) : 0;
}

static bool wants_help(const cli_t *c)
{
	for (int i = 1; i < c->argc; i++)
		if (strcmp(c->argv[i], "--help") == 0 || strcmp(c->argv[i], "-h") == 0)
			return true;
	return false;
}

static int print_help(const char *cmd)
{
	const char *h = help_of(cmd);
	out("%s", h ? h : usage_text);
	return 0;
}

static int open_reg(const cli_t *c, bool write, reg_t **reg)
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

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
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

/* A FILE argument: - (standard input) or a name that is not an option. */
static bool is_file_arg(const char *arg)
{
	return arg[0] != '-' || strcmp(arg, "-") == 0;
}

static int cmd_import(const cli_t *c)
{
	int first = 1, files = 0;
	bool replace = false;
	for (int i = first; i < c->argc; i++)
		if (strcmp(c->argv[i], "--replace") == 0)
			replace = true;
		else if (is_file_arg(c->argv[i]))
			files++;
		else
			return stray("import", c->argv[i]);
	if (files == 0)
		return cmd_usage("import", "needs a file (or - for standard input)");
	char err[JSONL_ERR_MAX] = "";
	import_t im = {.replace = replace, .err = err};
	double t0 = now();
	int rc = parse_files(c, first, &im, err);
	reg_t *reg = NULL;
	created_t cr = will_create(c->db);
	if (!rc && (rc = open_reg(c, true, &reg))) {
		free_files(&im);
		return rc;
	}
	size_t records = 0;
	for (size_t i = 0; i < im.n; i++)
		records += jsonl_count(im.files[i]);
	if (!rc) {
		double t1 = now();
		reg_txn_t *txn;
		rc = reg_write(reg, import_fn, &im);
		if (!rc && reg_txn_begin(reg, false, &txn) == 0) {
			fprintf(stderr,
			        "internalctl: imported %zu records in %.2f s (parse %.2f s, write "
			        "%.2f s); generation %llu\n",
			        records, now() - t0, t1 - t0, now() - t1,
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
static int cmd_upgrade(const cli_t *c)
{
	for (int i = 1; i < c->argc; i++)
		if (!is_file_arg(c->argv[i]))
			return stray("upgrade", c->argv[i]);
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
	int rc = open_reg(c, false, &reg);
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

static double now(void);

static int machine_fn(reg_txn_t *txn, void *arg)
{
	machine_op_t *m = arg;
	double t0 = now();
	int rc = strcmp(m->op, "delete") == 0
	                 ? reg_delete_machine(txn, m->id)
	                 : reg_set_state(txn, m->id,
	                                 strcmp(m->op, "start") == 0 ? "started" : "stopped");
	m->work = now() - t0;
	return rc;
}

static int cmd_machine(const cli_t *c)
{
	for (int i = 1; i < c->argc; i++)
		if (c->argv[i][0] == '-') /* no id starts with '-' */
			return stray("machine", c->argv[i]);
	if (c->argc < 3)
		return cmd_usage("machine", "takes start, stop or delete and a Machine id");
	if (c->argc > 3)
		return stray("machine", c->argv[3]);
	/* ids are stored lower-cased, as import lower-cases them: 148E1D0A2C5D89 is one */
	for (char *p = c->argv[2]; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	machine_op_t m = {c->argv[1], c->argv[2], 0};
	if (strcmp(m.op, "start") && strcmp(m.op, "stop") && strcmp(m.op, "delete"))
		return cmd_usage("machine", "takes start, stop or delete, not '%s'", m.op);
	reg_t *reg;
	int rc = open_reg(c, true, &reg);
	if (rc)
		return rc;
	double t0 = now();
	rc = reg_write(reg, machine_fn, &m);
	double dt = now() - t0;
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
			out("%-*s  ", (int)t->w[i], s);
		} else {
			out("%s\n", s);
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
				return cmd_usage(cmd, "%s needs a value (%s)", a,
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
				return cmd_usage(cmd, "--ttl %s: want seconds, 0 to 2147483647", v);
			c->ttl = (uint32_t)t;
		} else if (ls && !c->what && a[0] != '-') {
			c->what = a;
		} else {
			return stray(cmd, a);
		}
	}
	if (!ls)
		return 0;
	if (!c->what)
		return cmd_usage(cmd, "takes orgs, apps, machines, peers or regions");
	if (c->org && strcmp(c->what, "regions") == 0) /* a flag that would do nothing */
		return cmd_usage(cmd, "--org does not apply to regions: they belong to no org");
	for (size_t i = 0; i < sizeof(ls_kinds) / sizeof(ls_kinds[0]); i++)
		if (strcmp(c->what, ls_kinds[i]) == 0)
			return 0;
	return cmd_usage(cmd, "takes orgs, apps, machines, peers or regions, not '%s'", c->what);
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
	double t0 = now();
	int rc = reg_check(txn, report, &n);
	if (rc < 0) {
		fprintf(stderr, "internalctl: check: %s\n", reg_strerror(rc));
		return EXIT_REFUSED;
	}
	if (rc > 0) {
		fprintf(stderr, "internalctl: check: %d mismatches\n", rc);
		return EXIT_REFUSED;
	}
	out("ok: every index matches the records (%.2f s)\n", now() - t0);
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
	out("generation     %llu\n", (unsigned long long)s.generation);
	out("orgs           %zu\n", s.orgs);
	out("machines       %zu (%zu started)\n", s.machines, s.started);
	out("peers          %zu\n", s.peers);
	out("flycast        %zu\n", s.flycast);
	out("regions        %zu\n", s.regions);
	out("index entries  %zu\n", s.index_entries);
	out("map used       %.1f MiB (%zu pages of %zu bytes)\n", s.map_used / 1048576.0,
	    s.map_used / (s.page_size ? s.page_size : 1), s.page_size);
	reg_follow_t f;
	if (reg_get_follow(txn, &f) == 0) {
		char when[64] = "never";
		time_t t = (time_t)(f.applied_ns / 1000000000ULL);
		struct tm tm;
		if (f.applied_ns && gmtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		out("follows        bucket %s (stream %s)\n", f.bucket,
		    f.stream[0] ? f.stream : "-");
		if (!f.synced) {
			out("synced         no: waiting for the first full sync\n");
			return 0;
		}
		out("last applied   seq %llu at %s\n", (unsigned long long)f.seq, when);
		out("bucket head    seq %llu (lag %llu changes)\n", (unsigned long long)f.head,
		    (unsigned long long)(f.head > f.seq ? f.head - f.seq : 0));
		char contact[64] = "never";
		t = (time_t)(f.contact_ns / 1000000000ULL);
		if (f.contact_ns && gmtime_r(&t, &tm))
			strftime(contact, sizeof(contact), "%Y-%m-%dT%H:%M:%SZ", &tm);
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		double ago = (double)now.tv_sec + now.tv_nsec / 1e9 - (double)f.contact_ns / 1e9;
		if (f.contact_ns)
			out("last contact   %s (%.1f s ago)\n", contact, ago);
		else
			out("last contact   never\n");
	}
	return 0;
}

/* ---- publish / follow (the fleet, internald(7) FLEET) ------------------------------------ */

#define FLEET_URLS_MAX 16

typedef struct {
	const char *urls[FLEET_URLS_MAX];
	kv_opts_t nats;
	const char *bucket, *file;
	int replicas;
	long batch, ack_wait, stale_after;
	bool replace, has_metrics;
	cfg_addr_t metrics;
	const char *js_domain;
	long spread; /* --sync-spread, -1 when not given */
} fleet_args_t;

/* The options naming a file or value of how to reach NATS, and where each goes. */
static const char **nats_option(fleet_args_t *a, const char *arg)
{
	static const struct {
		const char *name;
		size_t off;
	} opts[] = {
	        {"--tls-ca", offsetof(kv_opts_t, tls_ca)},
	        {"--tls-cert", offsetof(kv_opts_t, tls_cert)},
	        {"--tls-key", offsetof(kv_opts_t, tls_key)},
	        {"--nats-user", offsetof(kv_opts_t, user)},
	        {"--nats-password-file", offsetof(kv_opts_t, password_file)},
	        {"--nats-token-file", offsetof(kv_opts_t, token_file)},
	        {"--creds", offsetof(kv_opts_t, creds)},
	        {"--nkey", offsetof(kv_opts_t, nkey)},
	};
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strcmp(arg, opts[i].name) == 0)
			return (const char **)((char *)&a->nats + opts[i].off);
	return NULL;
}

/* A URL's password, if it has one, copied out and starred in place: the argument list
 * (ps, /proc/PID/cmdline) shows "nats://user:***@host" from here on. NULL: no memory. */
static const char *hide_password(char *url)
{
	char *p = strstr(url, "://"), *at, *colon;
	if (!p || !(at = strchr(p + 3, '@')) || !(colon = memchr(p + 3, ':', (size_t)(at - p - 3))))
		return url;
	char *copy = strdup(url);
	if (copy)
		memset(colon + 1, '*', (size_t)(at - colon - 1));
	return copy;
}

/* NATS_URL's comma-separated servers into a->urls (the default when no --nats). */
static void urls_from_env(fleet_args_t *a)
{
	const char *env = getenv("NATS_URL");
	char *list = env && *env ? strdup(env) : NULL, *save = NULL;
	for (char *u = list ? strtok_r(list, ", ", &save) : NULL;
	     u && a->nats.nurls < FLEET_URLS_MAX; u = strtok_r(NULL, ", ", &save))
		a->urls[a->nats.nurls++] = u; /* list lives as long as the process */
}

/* A JetStream KV bucket name: letters, digits, '-' and '_' (NATS refuses any other, and
 * follow would retry it for ever), at most what the registry stores of the followed
 * bucket's name (a longer one would never match it again: a full sync at every start). */
#define BUCKET_MAX (sizeof(((reg_follow_t *)0)->bucket) - 1)

static bool bucket_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > BUCKET_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	return true;
}

/* A number of min..max; false if v is anything else. */
static bool parse_range(const char *v, long min, long max, long *res)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (!*v || *end || errno || n < min || n > max)
		return false;
	*res = n;
	return true;
}

/* A JetStream domain: one subject token, as a bucket name. */
#define DOMAIN_RULE "a JetStream domain is 1 to 63 letters, digits, '-' and '_'"
static bool domain_valid(const char *s)
{
	return strlen(s) < 64 && bucket_valid(s);
}

/* Parses the options publish (file) and follow (!file) share. 0, or an exit code. */
static int fleet_args(const cli_t *c, bool file, fleet_args_t *a)
{
	const char *cmd = c->argv[0];
	*a = (fleet_args_t){.bucket = "internal", .replicas = 1, .spread = -1};
	a->nats.urls = a->urls;
	for (int i = 1; i < c->argc; i++) {
		const char *arg = c->argv[i], *val = NULL;
		bool nats = strcmp(arg, "--nats") == 0, bucket = strcmp(arg, "--bucket") == 0;
		bool replicas = file && strcmp(arg, "--replicas") == 0;
		bool batch = !file && strcmp(arg, "--batch") == 0;
		bool ack_wait = file && strcmp(arg, "--ack-wait") == 0;
		bool domain = !file && strcmp(arg, "--js-domain") == 0;
		bool spread = !file && strcmp(arg, "--sync-spread") == 0;
		bool metrics = !file && strcmp(arg, "--metrics") == 0;
		bool stale = !file && strcmp(arg, "--stale-after") == 0;
		const char **conn = nats_option(a, arg);
		long n;
		if (nats || bucket || replicas || batch || ack_wait || domain || spread || conn ||
		    metrics || stale) {
			if (i + 1 == c->argc)
				return cmd_usage(cmd, "%s needs a value", arg);
			val = c->argv[++i];
		}
		if (nats) {
			if (a->nats.nurls == FLEET_URLS_MAX)
				return cmd_usage(cmd, "at most %d --nats URLs", FLEET_URLS_MAX);
			if (!(val = hide_password(c->argv[i])))
				return EXIT_REFUSED;
			a->urls[a->nats.nurls++] = val;
		} else if (conn) {
			*conn = val;
		} else if (metrics) {
			if (config_parse_addr(val, 9154, &a->metrics))
				return cmd_usage(
				        cmd,
				        "--metrics '%s': not an address (HOST:PORT, [V6]:PORT)",
				        val);
			a->has_metrics = true;
		} else if (stale) {
			if (!parse_range(val, 1, 86400, &n))
				return cmd_usage(cmd,
				                 "--stale-after takes 1 to 86400 seconds, not '%s'",
				                 val);
			a->stale_after = n;
		} else if (bucket) {
			if (!bucket_valid(val))
				return cmd_usage(
				        cmd,
				        "--bucket '%s': a bucket name is 1 to %zu letters, "
				        "digits, '-' and '_' only",
				        val, BUCKET_MAX);
			a->bucket = val;
		} else if (replicas) {
			if (!parse_range(val, 1, 5, &n))
				return cmd_usage(cmd, "--replicas takes 1 to 5, not '%s'", val);
			a->replicas = (int)n;
		} else if (batch) {
			if (!parse_range(val, 1, 1000000, &n))
				return cmd_usage(cmd, "--batch takes 1 to 1000000, not '%s'", val);
			a->batch = n;
		} else if (ack_wait) {
			if (!parse_range(val, 1, 3600, &n))
				return cmd_usage(
				        cmd, "--ack-wait takes 1 to 3600 seconds, not '%s'", val);
			a->ack_wait = n;
		} else if (domain) {
			if (!domain_valid(val))
				return cmd_usage(cmd, "--js-domain '%s': %s", val, DOMAIN_RULE);
			a->js_domain = val;
		} else if (spread) {
			if (!parse_range(val, 0, 3600, &a->spread))
				return cmd_usage(cmd,
				                 "--sync-spread takes 0 to 3600 seconds, not '%s'",
				                 val);
		} else if (file && strcmp(arg, "--replace") == 0) {
			a->replace = true;
		} else if (file && is_file_arg(arg)) {
			if (a->file)
				return cmd_usage(cmd, "takes one file: '%s' is a second", arg);
			a->file = arg;
		} else {
			return stray(cmd, arg);
		}
	}
	if (file && !a->file)
		return cmd_usage(cmd, "needs a file (or - for standard input)");
	const kv_opts_t *k = &a->nats;
	if (!k->user != !k->password_file)
		return cmd_usage(cmd, "--nats-user and --nats-password-file go together");
	if (!k->tls_cert != !k->tls_key)
		return cmd_usage(cmd, "--tls-cert and --tls-key go together");
	if (!!k->password_file + !!k->token_file + !!k->creds + !!k->nkey > 1)
		return cmd_usage(cmd, "give one of --nats-password-file, --nats-token-file, "
		                      "--creds, --nkey");
	if (a->nats.nurls == 0)
		urls_from_env(a);
	if (a->nats.nurls == 0)
		a->urls[a->nats.nurls++] = "nats://127.0.0.1:4222";
	return 0;
}

static int cmd_publish(const cli_t *c)
{
	fleet_args_t a;
	int rc = fleet_args(c, true, &a);
	if (rc)
		return rc;
	log_set_level(LOG_WARN); /* the scratch mirror's progress is not the user's news */
	publish_opts_t o = {.nats = &a.nats,
	                    .bucket = a.bucket,
	                    .replicas = a.replicas,
	                    .ack_wait_ms = a.ack_wait * 1000,
	                    .replace = a.replace,
	                    .file = a.file};
	return publish_run(&o) ? EXIT_REFUSED : 0;
}

static volatile sig_atomic_t follow_stop;

static void on_stop(int sig)
{
	(void)sig;
	follow_stop = 1;
}

static int cmd_follow(const cli_t *c)
{
	fleet_args_t a;
	reg_t *reg;
	int rc = fleet_args(c, false, &a);
	if (rc)
		return rc;
	struct sigaction sa = {.sa_handler = on_stop};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	cli_t wc = *c;
	wc.flags |= REG_WRITEMAP; /* a full sync is one transaction of the whole bucket */
	if ((rc = open_reg(&wc, true, &reg)))
		return rc;
	/* --sync-spread 0 is none (-1 here); without it, the default (0 here) */
	double spread = a.spread < 0 ? 0 : a.spread == 0 ? -1 : (double)a.spread;
	char pending[4096];
	snprintf(pending, sizeof(pending), "%s/follow-pending", c->db);
	follow_opts_t o = {.nats = &a.nats,
	                   .bucket = a.bucket,
	                   .batch_max = (size_t)a.batch,
	                   .stop = &follow_stop,
	                   .js_domain = a.js_domain,
	                   .sync_spread_s = spread,
	                   .pending_path = pending,
	                   .stale_after = (double)a.stale_after};

	char err[CFG_ERR_MAX];
	if (a.has_metrics &&
	    met_http_start(&o.http, &a.metrics, INTERNALD_VERSION, INTERNALD_REVISION, err)) {
		fprintf(stderr, "internalctl: follow: %s\n", err);
		reg_close(reg);
		return EXIT_REFUSED;
	}
	rc = follow_run(reg, &o, NULL);
	reg_close(reg);
	return rc ? EXIT_REFUSED : 0;
}

/* internalctl mirror: a region's leaf node gets its mirror of the hub's bucket. */
static int cmd_mirror(const cli_t *c)
{
	const char *cmd = c->argv[0], *urls[FLEET_URLS_MAX], *bucket = "internal";
	const char *domain = NULL, *from = NULL;
	size_t nurls = 0;
	long replicas = 1;
	for (int i = 1; i < c->argc; i++) {
		const char *arg = c->argv[i], *val = i + 1 < c->argc ? c->argv[i + 1] : NULL;
		if (strcmp(arg, "--nats") && strcmp(arg, "--bucket") &&
		    strcmp(arg, "--js-domain") && strcmp(arg, "--from-domain") &&
		    strcmp(arg, "--replicas"))
			return stray(cmd, arg);
		if (!val)
			return cmd_usage(cmd, "%s needs a value", arg);
		i++;
		if (strcmp(arg, "--nats") == 0) {
			if (nurls == FLEET_URLS_MAX)
				return cmd_usage(cmd, "at most %d --nats URLs", FLEET_URLS_MAX);
			urls[nurls++] = val;
		} else if (strcmp(arg, "--bucket") == 0) {
			if (!bucket_valid(val))
				return cmd_usage(
				        cmd,
				        "--bucket '%s': a bucket name is 1 to %zu letters, "
				        "digits, '-' and '_' only",
				        val, BUCKET_MAX);
			bucket = val;
		} else if (strcmp(arg, "--replicas") == 0) {
			if (!parse_range(val, 1, 5, &replicas))
				return cmd_usage(cmd, "--replicas takes 1 to 5, not '%s'", val);
		} else if (!domain_valid(val)) {
			return cmd_usage(cmd, "%s '%s': %s", arg, val, DOMAIN_RULE);
		} else if (strcmp(arg, "--js-domain") == 0) {
			domain = val;
		} else {
			from = val;
		}
	}
	if (!from)
		return cmd_usage(cmd, "needs --from-domain (the hub's JetStream domain)");
	if (nurls == 0)
		urls[nurls++] = "nats://127.0.0.1:4222";
	kv_conn_t *conn = NULL;
	int rc = kv_connect(&conn, urls, nurls, false);
	if (!rc && !(rc = kv_set_domain(conn, domain)))
		rc = kv_mirror_create(conn, bucket, from, (int)replicas);
	if (rc)
		fprintf(stderr, "internalctl: mirror of bucket %s from domain %s: %s\n", bucket,
		        from, kv_strerror(rc));
	else
		out("internalctl: bucket %s mirrors domain %s's\n", bucket, from);
	if (conn)
		kv_close(conn);
	return rc ? EXIT_REFUSED : 0;
}

/* What a command wrote on standard output must have reached it: ls, stats, check, the
 * help texts print with stdio, whose errors (a full disk, a closed pipe's EPIPE when
 * SIGPIPE is ignored) would otherwise be lost at exit. */
static int finish_output(int rc)
{
	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return rc;
	int e = out_errno ? out_errno : errno ? errno : EIO;
	if (rc == 0) { /* a failed command has said why already */
		fprintf(stderr, "internalctl: writing the output: %s\n", strerror(e));
		rc = EXIT_REFUSED;
	}
	return rc;
}

static int run(int argc, char **argv)
{
	cli_t c = {.db = "/var/lib/internald"};
	int n = 0; /* the command and its arguments, moved to argv[1..n] */
	/* the global options, before the command or after it: they are taken out, so a
	 * command never mistakes one for its own argument nor ignores one */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--db") == 0 || strncmp(a, "--db=", 5) == 0) {
			const char *v = a[4] == '=' ? a + 5 : i + 1 < argc ? argv[++i] : NULL;
			if (!v || !*v)
				return usage("--db needs a directory (--db DIR or --db=DIR)");
			c.db = v;
		} else if (strcmp(a, "--no-sync") == 0) {
			c.flags |= REG_NOSYNC;
		} else if (n == 0 && a[0] == '-') {
			if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
				return out("%s", usage_text), 0;
			if (strcmp(a, "--version") == 0)
				return VERSION_PRINT("internalctl") < 0;
			fprintf(stderr, "internalctl: unknown option '%s'\n", a);
			return usage(NULL);
		} else {
			argv[++n] = argv[i]; /* n < i: nothing unread is overwritten */
		}
	}
	if (n == 0)
		return usage(NULL);
	c.argc = n;
	c.argv = argv + 1;
	const char *cmd = c.argv[0];
	if (wants_help(&c))
		return print_help(cmd);
	if (strcmp(cmd, "import") == 0)
		return cmd_import(&c);
	if (strcmp(cmd, "export") == 0)
		return no_args(&c) ? EXIT_USAGE : with_read_txn(&c, do_export);
	if (strcmp(cmd, "upgrade") == 0)
		return cmd_upgrade(&c);
	if (strcmp(cmd, "machine") == 0)
		return cmd_machine(&c);
	if (strcmp(cmd, "ls") == 0 || strcmp(cmd, "zone") == 0)
		return parse_view(&c) ? EXIT_USAGE
		                      : with_read_txn(&c, strcmp(cmd, "ls") == 0 ? do_ls : do_zone);
	if (strcmp(cmd, "check") == 0)
		return no_args(&c) ? EXIT_USAGE : with_read_txn(&c, do_check);
	if (strcmp(cmd, "stats") == 0)
		return no_args(&c) ? EXIT_USAGE : with_read_txn(&c, do_stats);
	if (strcmp(cmd, "publish") == 0)
		return cmd_publish(&c);
	if (strcmp(cmd, "follow") == 0)
		return cmd_follow(&c);
	if (strcmp(cmd, "mirror") == 0)
		return cmd_mirror(&c);
	fprintf(stderr, "internalctl: unknown command '%s'\n", cmd);
	return usage(NULL);
}

int main(int argc, char **argv)
{
	return finish_output(run(argc, argv));
}
