/*
 * internalctl's fleet commands: publish (a file into the fleet's NATS KV bucket), follow
 * (the bucket into this host's registry, a daemon) and mirror (a region's copy of the
 * hub's bucket). Parses their options and hands over to publish.c, follow.c and kv.c.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_impl.h"
#include "follow.h"
#include "kv.h"
#include "log.h"
#include "metrics_http.h"
#include "publish.h"
#include "registry.h"
#include "version.h"

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
	long spread;                     /* --sync-spread, -1 when not given */
	char *owned[FLEET_URLS_MAX + 1]; /* the URL copies above point into; fleet_args_free */
	int nowned;
} fleet_args_t;

static void fleet_args_free(fleet_args_t *a)
{
	for (int i = 0; i < a->nowned; i++)
		free(a->owned[i]);
	a->nowned = 0;
}

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
static const char *hide_password(fleet_args_t *a, char *url)
{
	char *p = strstr(url, "://"), *at, *colon;
	if (!p || !(at = strchr(p + 3, '@')) || !(colon = memchr(p + 3, ':', (size_t)(at - p - 3))))
		return url;
	char *copy = strdup(url);
	if (copy) {
		memset(colon + 1, '*', (size_t)(at - colon - 1));
		a->owned[a->nowned++] = copy;
	}
	return copy;
}

/* NATS_URL's comma-separated servers into a->urls (the default when no --nats). */
static void urls_from_env(fleet_args_t *a)
{
	const char *env = getenv("NATS_URL");
	char *list = env && *env ? strdup(env) : NULL, *save = NULL;
	if (list)
		a->owned[a->nowned++] = list;
	for (char *u = list ? strtok_r(list, ", ", &save) : NULL;
	     u && a->nats.nurls < FLEET_URLS_MAX; u = strtok_r(NULL, ", ", &save))
		a->urls[a->nats.nurls++] = u;
}

/* A JetStream KV bucket name: letters, digits, '-' and '_' (NATS refuses any other, and
 * follow would retry it for ever), at most what the registry stores of the followed
 * bucket's name (a longer one would never match it again: a full sync at every start). */
#define BUCKET_MAX (sizeof(((reg_follow_t *)0)->bucket) - 1)

static bool bucket_valid(const char *s)
{
	return kv_name_valid(s, BUCKET_MAX);
}

/* The usage error for a --bucket value bucket_valid refuses. */
static int bucket_usage(const char *cmd, const char *val)
{
	return ctl_cmd_usage(
	        cmd, "--bucket '%s': a bucket name is 1 to %zu letters, digits, '-' and '_' only",
	        val, BUCKET_MAX);
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
	return kv_name_valid(s, 63);
}

/* Parses the options publish (file) and follow (!file) share. 0, or an exit code. */
static int fleet_args_parse(const cli_t *c, bool file, fleet_args_t *a)
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
				return ctl_cmd_usage(cmd, "%s needs a value", arg);
			val = c->argv[++i];
		}
		if (nats) {
			if (a->nats.nurls == FLEET_URLS_MAX)
				return ctl_cmd_usage(cmd, "at most %d --nats URLs", FLEET_URLS_MAX);
			if (!(val = hide_password(a, c->argv[i])))
				return EXIT_REFUSED;
			a->urls[a->nats.nurls++] = val;
		} else if (conn) {
			*conn = val;
		} else if (metrics) {
			if (config_parse_addr(val, 9154, &a->metrics))
				return ctl_cmd_usage(
				        cmd,
				        "--metrics '%s': not an address (HOST:PORT, [V6]:PORT)",
				        val);
			a->has_metrics = true;
		} else if (stale) {
			if (!parse_range(val, 1, 86400, &n))
				return ctl_cmd_usage(
				        cmd, "--stale-after takes 1 to 86400 seconds, not '%s'",
				        val);
			a->stale_after = n;
		} else if (bucket) {
			if (!bucket_valid(val))
				return bucket_usage(cmd, val);
			a->bucket = val;
		} else if (replicas) {
			if (!parse_range(val, 1, 5, &n))
				return ctl_cmd_usage(cmd, "--replicas takes 1 to 5, not '%s'", val);
			a->replicas = (int)n;
		} else if (batch) {
			if (!parse_range(val, 1, 1000000, &n))
				return ctl_cmd_usage(cmd, "--batch takes 1 to 1000000, not '%s'",
				                     val);
			a->batch = n;
		} else if (ack_wait) {
			if (!parse_range(val, 1, 3600, &n))
				return ctl_cmd_usage(
				        cmd, "--ack-wait takes 1 to 3600 seconds, not '%s'", val);
			a->ack_wait = n;
		} else if (domain) {
			if (!domain_valid(val))
				return ctl_cmd_usage(cmd, "--js-domain '%s': %s", val, DOMAIN_RULE);
			a->js_domain = val;
		} else if (spread) {
			if (!parse_range(val, 0, 3600, &a->spread))
				return ctl_cmd_usage(
				        cmd, "--sync-spread takes 0 to 3600 seconds, not '%s'",
				        val);
		} else if (file && strcmp(arg, "--replace") == 0) {
			a->replace = true;
		} else if (file && ctl_is_file_arg(arg)) {
			if (a->file)
				return ctl_cmd_usage(cmd, "takes one file: '%s' is a second", arg);
			a->file = arg;
		} else {
			return ctl_stray(cmd, arg);
		}
	}
	if (file && !a->file)
		return ctl_cmd_usage(cmd, "needs a file (or - for standard input)");
	const kv_opts_t *k = &a->nats;
	if (!k->user != !k->password_file)
		return ctl_cmd_usage(cmd, "--nats-user and --nats-password-file go together");
	if (!k->tls_cert != !k->tls_key)
		return ctl_cmd_usage(cmd, "--tls-cert and --tls-key go together");
	if (!!k->password_file + !!k->token_file + !!k->creds + !!k->nkey > 1)
		return ctl_cmd_usage(cmd, "give one of --nats-password-file, --nats-token-file, "
		                          "--creds, --nkey");
	if (a->nats.nurls == 0)
		urls_from_env(a);
	if (a->nats.nurls == 0)
		a->urls[a->nats.nurls++] = "nats://127.0.0.1:4222";
	return 0;
}

/* fleet_args_parse; on success the caller owns a's copies (fleet_args_free). */
static int fleet_args(const cli_t *c, bool file, fleet_args_t *a)
{
	int rc = fleet_args_parse(c, file, a);
	if (rc)
		fleet_args_free(a);
	return rc;
}

int ctl_publish(cli_t *c)
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
	                    .file = a.file,
	                    .db = c->db_given ? c->db : NULL};
	rc = publish_run(&o) ? EXIT_REFUSED : 0;
	fleet_args_free(&a);
	return rc;
}

static volatile sig_atomic_t follow_stop;

static void on_stop(int sig)
{
	(void)sig;
	follow_stop = 1;
}

static int follow_with(cli_t *c, fleet_args_t *a);

int ctl_follow(cli_t *c)
{
	fleet_args_t a;
	int rc = fleet_args(c, false, &a);
	if (rc)
		return rc;
	rc = follow_with(c, &a);
	fleet_args_free(&a);
	return rc;
}

/* follow with its parsed options (a keeps owning its copies) */
static int follow_with(cli_t *c, fleet_args_t *a)
{
	reg_t *reg;
	int rc;
	struct sigaction sa = {.sa_handler = on_stop};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	cli_t wc = *c;
	wc.flags |= REG_WRITEMAP; /* a full sync is one transaction of the whole bucket */
	if ((rc = ctl_open_reg(&wc, true, &reg)))
		return rc;
	/* --sync-spread 0 is none (-1 here); without it, the default (0 here) */
	double spread = a->spread < 0 ? 0 : a->spread == 0 ? -1 : (double)a->spread;
	char pending[4096];
	snprintf(pending, sizeof(pending), "%s/follow-pending", c->db);
	follow_opts_t o = {.nats = &a->nats,
	                   .bucket = a->bucket,
	                   .batch_max = (size_t)a->batch,
	                   .stop = &follow_stop,
	                   .js_domain = a->js_domain,
	                   .sync_spread_s = spread,
	                   .pending_path = pending,
	                   .stale_after = (double)a->stale_after};

	char err[CFG_ERR_MAX];
	if (a->has_metrics &&
	    met_http_start(&o.http, &a->metrics, INTERNALD_VERSION, INTERNALD_REVISION, err)) {
		fprintf(stderr, "internalctl: follow: %s\n", err);
		reg_close(reg);
		return EXIT_REFUSED;
	}
	rc = follow_run(reg, &o, NULL);
	reg_close(reg);
	return rc ? EXIT_REFUSED : 0;
}

/* internalctl mirror: a region's leaf node gets its mirror of the hub's bucket. */
int ctl_mirror(cli_t *c)
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
			return ctl_stray(cmd, arg);
		if (!val)
			return ctl_cmd_usage(cmd, "%s needs a value", arg);
		i++;
		if (strcmp(arg, "--nats") == 0) {
			if (nurls == FLEET_URLS_MAX)
				return ctl_cmd_usage(cmd, "at most %d --nats URLs", FLEET_URLS_MAX);
			urls[nurls++] = val;
		} else if (strcmp(arg, "--bucket") == 0) {
			if (!bucket_valid(val))
				return bucket_usage(cmd, val);
			bucket = val;
		} else if (strcmp(arg, "--replicas") == 0) {
			if (!parse_range(val, 1, 5, &replicas))
				return ctl_cmd_usage(cmd, "--replicas takes 1 to 5, not '%s'", val);
		} else if (!domain_valid(val)) {
			return ctl_cmd_usage(cmd, "%s '%s': %s", arg, val, DOMAIN_RULE);
		} else if (strcmp(arg, "--js-domain") == 0) {
			domain = val;
		} else {
			from = val;
		}
	}
	if (!from)
		return ctl_cmd_usage(cmd, "needs --from-domain (the hub's JetStream domain)");
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
		ctl_out("internalctl: bucket %s mirrors domain %s's\n", bucket, from);
	if (conn)
		kv_close(conn);
	return rc ? EXIT_REFUSED : 0;
}
