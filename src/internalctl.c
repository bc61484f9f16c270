/*
 * internalctl — the registry's writer and inspector. Takes out the global options, then
 * hands the command line to the command the table below names; the commands live in
 * ctl_registry.c (import, export, upgrade, machine, ls, zone, check, stats) and
 * ctl_fleet.c (publish, follow, mirror). Nothing here knows the key layout.
 *
 * Exit codes: 0 done, 1 refused input or a failed operation, 2 usage.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl_impl.h"
#include "registry.h"
#include "version.h"

#define NATS_HELP                                                                                  \
	"NATS: --nats URL (nats:// or tls://; default: $NATS_URL, a comma list, else\n"            \
	"nats://127.0.0.1:4222), --tls-ca FILE, --tls-cert FILE --tls-key FILE, and one of\n"      \
	"--nats-user NAME --nats-password-file FILE, --nats-token-file FILE, --creds FILE,\n"      \
	"--nkey FILE (secrets only from files).\n"

/* Every command, once, knotc's way: its name, its handler, its lines in the overview
 * (after two spaces), and its --help text (whose first line is the usage line a usage
 * error repeats). The overview lists the commands in this order. */
typedef struct {
	const char *name;
	int (*run)(cli_t *c);
	const char *synopsis;
	const char *help;
} ctl_cmd_t;

static const ctl_cmd_t cmd_table[] = {
        {"import", ctl_import,
         "import [--replace] FILE...  upsert every record of JSON Lines files (- is stdin;\n"
         "                              one transaction)\n",
         "usage: internalctl import [--replace] FILE...\n"
         "Validates every file (- is standard input), then writes them in one\n"
         "transaction, in order: all or nothing; a refused import creates nothing.\n"
         "--replace: the files become the whole registry.\n"},
        {"export", ctl_export,
         "export                      the whole registry as JSON Lines on stdout\n",
         "usage: internalctl export\nWrites every record as JSON Lines; "
         "import --replace of it gives the same registry.\n"},
        {"upgrade", ctl_upgrade,
         "upgrade [FILE...]           convert a registry of schema 3 or 4 in place\n",
         "usage: internalctl upgrade [FILE...]\n"
         "Converts a registry written by an earlier release (schema 3 or 4) in\n"
         "place, in one transaction with FILE... Schema 4 needs no file; schema 3\n"
         "held no regions: give zones/regions.jsonl (every Machine and peer must\n"
         "name a region record). Exit 0 also when already current.\n"},
        {"machine", ctl_machine, "machine start|stop|delete ID\n",
         "usage: internalctl machine start|stop|delete ID\n"},
        {"ls", ctl_ls, "ls orgs|apps|machines|peers [--org SLUG] | ls regions\n",
         "usage: internalctl ls orgs|apps|machines|peers [--org SLUG]\n"
         "       internalctl ls regions\n"
         "--org SLUG: only that org's rows (not for regions, which belong to no org).\n"},
        {"zone", ctl_zone, "zone [--org SLUG] [--ttl N] the org's .internal names as a zone file\n",
         "usage: internalctl zone [--org SLUG] [--ttl SECONDS]\n"
         "Prints the org's .internal names (no nearest, PTR or .flycast) as a zone file.\n"
         "--org may be left out when the registry holds one org. TTL defaults to 5.\n"},
        {"check", ctl_check,
         "check                       verify every index against the records (exit 1 if not)\n",
         "usage: internalctl check\nExit 0 if every index matches the records, 1 if not.\n"},
        {"stats", ctl_stats, "stats                       record counts, generation, map use\n",
         "usage: internalctl stats\n"},
        {"publish", ctl_publish,
         "publish [--nats URL]... [--bucket NAME] [--replicas N] [--ack-wait S] [--replace]\n"
         "          FILE|-\n"
         "                              validate a file against the fleet's bucket, then write "
         "it\n",
         "usage: internalctl publish [--nats URL]... [--bucket NAME] [--replicas N]\n"
         "                          [--ack-wait SECONDS] [--replace] FILE|-\n"
         "Validates the whole file as import does, against the bucket's content, then puts\n"
         "every record under its key; \"op\":\"delete\" records become KV deletes.\n"
         "--replace: also delete every key the file lacks. Refused input writes nothing.\n"
         "--nats defaults to nats://127.0.0.1:4222, --bucket to internal (1 to 63 letters,\n"
         "digits, '-' and '_'); --replicas (default 1) applies when the bucket is created.\n"
         "--ack-wait (1 to 3600, default 30) bounds each wait for the server's\n"
         "acknowledgements.\n"
         "--db DIR given: DIR is a registry that 'internalctl follow' keeps at this bucket;\n"
         "once it has applied the bucket's head (waited for up to --ack-wait), the file\n"
         "is validated against it and the bucket read only under the file's keys, so a\n"
         "publish costs what it publishes; behind the head, the whole bucket is read.\n" NATS_HELP},
        {"follow", ctl_follow,
         "follow [--nats URL]... [--bucket NAME] [--batch N] [--js-domain D]\n"
         "         [--sync-spread S]\n"
         "                              mirror the fleet's bucket into this registry (a daemon)\n",
         "usage: internalctl follow [--nats URL]... [--bucket NAME] [--batch N]\n"
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
        {"mirror", ctl_mirror,
         "mirror [--nats URL]... [--js-domain D] [--bucket NAME] [--replicas N]\n"
         "         --from-domain HUB    create a region's mirror of the hub's bucket\n",
         "usage: internalctl mirror [--nats URL]... [--js-domain D] [--bucket NAME]\n"
         "                          [--replicas N] --from-domain HUB\n"
         "Creates the bucket (default internal) in the JetStream domain of the server\n"
         "connected to (or D) as a mirror of the bucket of the same name in domain HUB,\n"
         "which the server fills over its leaf node connection, keeping the hub's stream\n"
         "sequences. Exit 0 also when that mirror exists; 1 when the bucket exists and\n"
         "is not that mirror. --replicas (1 to 5, default 1) within the domain.\n" NATS_HELP},
};

#define CMD_COUNT (sizeof(cmd_table) / sizeof(cmd_table[0]))

static const char usage_head[] = "usage: internalctl [--db DIR] [--no-sync] COMMAND [ARGS]\n"
                                 "       internalctl --version\n"
                                 "\n"
                                 "commands:\n";
static const char usage_tail[] =
        "  (publish and follow: --tls-ca, --tls-cert, --tls-key, --nats-user,\n"
        "   --nats-password-file, --nats-token-file, --creds, --nkey; NATS_URL)\n"
        "\n"
        "--db DIR (or --db=DIR) defaults to /var/lib/internald; it and --no-sync may also\n"
        "follow the command. 'internalctl COMMAND --help' for one command.\n";

/* The overview (internalctl --help, and after a usage error), made from the table. */
static char usage_text[4096];

static void usage_init(void)
{
	size_t n = (size_t)snprintf(usage_text, sizeof(usage_text), "%s", usage_head);
	for (size_t i = 0; i < CMD_COUNT && n < sizeof(usage_text); i++)
		n += (size_t)snprintf(usage_text + n, sizeof(usage_text) - n, "  %s",
		                      cmd_table[i].synopsis);
	if (n < sizeof(usage_text))
		snprintf(usage_text + n, sizeof(usage_text) - n, "%s", usage_tail);
}

static const ctl_cmd_t *cmd_find(const char *name)
{
	for (size_t i = 0; i < CMD_COUNT; i++)
		if (strcmp(cmd_table[i].name, name) == 0)
			return &cmd_table[i];
	return NULL;
}

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
void ctl_out(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vprintf(fmt, ap) < 0 && !out_errno)
		out_errno = errno ? errno : EIO;
	va_end(ap);
}

static const char *help_of(const char *cmd)
{
	const ctl_cmd_t *k = cmd_find(cmd);
	return k ? k->help : NULL;
}

/* A usage error of one command: the message, then that command's usage line. */
int ctl_cmd_usage(const char *cmd, const char *fmt, ...)
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
int ctl_stray(const char *cmd, const char *arg)
{
	if (arg[0] == '-' && arg[1])
		return ctl_cmd_usage(cmd, "unknown option '%s'", arg);
	return ctl_cmd_usage(cmd, "unexpected argument '%s'", arg);
}

/* export, check, stats: no arguments (a stray one may be a misplaced option). */
int ctl_no_args(const cli_t *c)
{
	return c->argc > 1 ? ctl_stray(c->argv[0], c->argv[1]) : 0;
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
	ctl_out("%s", h ? h : usage_text);
	return 0;
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
	usage_init();
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
			c.db_given = true;
		} else if (strcmp(a, "--no-sync") == 0) {
			c.flags |= REG_NOSYNC;
		} else if (n == 0 && a[0] == '-') {
			if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
				return ctl_out("%s", usage_text), 0;
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
	const ctl_cmd_t *k = cmd_find(cmd);
	if (k)
		return k->run(&c);
	fprintf(stderr, "internalctl: unknown command '%s'\n", cmd);
	return usage(NULL);
}

int main(int argc, char **argv)
{
	return finish_output(run(argc, argv));
}
