/*
 * internald — main(): read the configuration, open the registry read-only, bind, drop
 * privileges, start the server (regions are registry records: nothing else to load); on
 * SIGHUP read the configuration again. Thin by design: every piece lives in its module.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/types.h>
#include <unistd.h>

#include "answer.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "notify.h"
#include "portcheck.h"
#include "registry.h"
#include "server.h"
#include "version.h"

static config_t cfg;
static ans_conf_t conf;
static int g_argc;
static char **g_argv;

/* What answer.c needs from a configuration. */
static int build_conf(const config_t *c, ans_conf_t *a)
{
	*a = (ans_conf_t){0};
	a->region = c->region; /* its coordinates are the registry's, read per query */
	a->region_len = strlen(c->region);
	a->ttl = c->ttl;
	a->nsid = c->nsid[0] ? c->nsid : NULL;
	a->nsid_len = strlen(c->nsid);
	a->forward = c->nupstream > 0;
	a->acl = c->acl;
	return 0;
}

static bool same_addr(const cfg_addr_t *a, const cfg_addr_t *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* The file descriptors internald may open: the hard limit, raised to at start. */
static rlim_t fd_limit;

/* RLIMIT_NOFILE up to its hard limit (a default system gives 1024 of 4096 or more):
 * logged either way, since every limit below is sized from it. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl)) {
		log_warn("event=fd-limit status=unknown reason=\"getrlimit: %s\"", strerror(errno));
		fd_limit = 1024;
		return;
	}
	rlim_t was = rl.rlim_cur;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			rl.rlim_cur = was;
	}
	fd_limit = rl.rlim_cur == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_cur;
	log_info("event=fd-limit soft=%llu hard=%llu was=%llu", (unsigned long long)rl.rlim_cur,
	         rl.rlim_max == RLIM_INFINITY ? 0ULL : (unsigned long long)rl.rlim_max,
	         (unsigned long long)was);
}

/*
 * Sizes the TCP connections (all workers) and the forwarding table (per worker: one UDP
 * socket per query in flight) so that both full still leave a reserve: the listeners,
 * each worker's loop, the registry, the metrics listener (64), dnstap, and room to
 * accept and answer .internal over TCP. Over the limit, both shrink in proportion; quiet
 * says whether to log it (a reload sizes the same way again, silently).
 */
static void fit_fd_budget(config_t *c, bool quiet)
{
	unsigned workers = c->workers ? c->workers : (unsigned)get_nprocs();
	unsigned long long reserve =
	        64 + 80 + (unsigned long long)workers * (16 + 2 * c->nlisten + CFG_UPSTREAM_MAX);
	unsigned long long want = c->tcp_max_conns + (unsigned long long)workers * c->max_inflight;
	unsigned long long have = fd_limit > reserve + 32 ? fd_limit - reserve : 32;
	if (want <= have)
		return;
	unsigned tcp = (unsigned)(c->tcp_max_conns * have / want);
	unsigned inflight = (unsigned)(c->max_inflight * have / want);
	tcp = tcp < 16 ? 16 : tcp;
	inflight = inflight < 16 ? 16 : inflight;
	if (!quiet)
		log_warn("event=fd-limit status=sized limit=%llu reserve=%llu "
		         "tcp_max_connections=%u->%u max_inflight=%u->%u workers=%u "
		         "reason=\"the open files limit cannot hold both full: raise its hard "
		         "limit (LimitNOFILE=, ulimit -Hn)\"",
		         (unsigned long long)fd_limit, reserve, c->tcp_max_conns, tcp,
		         c->max_inflight, inflight, workers);
	c->tcp_max_conns = tcp;
	c->max_inflight = inflight;
}

/* The registry's files as internalctl makes them: data.mdb 0640 (every org's Machines are
 * no other local user's to read), lock.mdb 0660. A looser mode is warned about, not
 * refused: the registry is the writer's to fix. */
static void check_registry_modes(const char *db)
{
	static const struct {
		const char *file;
		mode_t loose;
		const char *why;
	} files[] = {
	        {"data.mdb", S_IROTH | S_IWOTH, "every local user can read every org's Machines"},
	        {"lock.mdb", S_IWOTH, "every local user can write the reader table"},
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[PATH_MAX + 16];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", db, files[i].file);
		if (stat(path, &st) == 0 && (st.st_mode & files[i].loose))
			log_warn(
			        "event=registry-mode file=%s mode=%04o reason=\"%s\" "
			        "hint=\"chmod o-rw (internalctl's next write sets 0640 and 0660)\"",
			        path, (unsigned)(st.st_mode & 07777), files[i].why);
	}
}

/* Each problem of p as a line of its own, its text quoted: prefix reason="...". */
static void log_problems(const cfg_problems_t *p, const char *prefix)
{
	for (unsigned i = 0; i < p->n && i < CFG_PROBLEMS_MAX; i++) {
		char q[2 * CFG_ERR_MAX], *o = q;
		for (const char *m = p->msg[i]; *m; m++) {
			if (*m == '"' || *m == '\\')
				*o++ = '\\';
			*o++ = *m;
		}
		*o = '\0';
		log_error("%s reason=\"%s\"", prefix, q);
	}
	if (p->n > CFG_PROBLEMS_MAX)
		log_error("%s problems=%u shown=%d", prefix, p->n, CFG_PROBLEMS_MAX);
}

/* SIGHUP: the config file and the command line again (the command line still wins). What
 * needs a rebind or a restart keeps its running value and is logged as such. */
static int reload_config(srv_t *s);
static int reload(srv_t *s, void *arg)
{
	(void)arg;
	notify_reloading(); /* systemd: RELOADING=1 until the READY=1 below */
	int rc = reload_config(s);
	notify_ready(rc ? "serving: the reload failed, the running configuration is kept"
	                : "serving: reloaded");
	return rc;
}

static int reload_config(srv_t *s)
{
	const config_t *cur = srv_config(s);
	char err[CFG_ERR_MAX] = "";
	config_t *n = malloc(sizeof(*n));
	cfg_problems_t *p = malloc(sizeof(*p));
	ans_conf_t a;
	if (!n || !p) {
		free(n), free(p);
		log_error("event=reload status=failed reason=\"out of memory\"");
		return -ENOMEM;
	}
	config_defaults(n);
	int rc = config_parse_args(n, g_argc, g_argv, p);
	if (rc) {
		log_problems(p, "event=reload status=failed");
		free(p), free(n);
		return -EINVAL;
	}
	free(p);
	if (n->nupstream == 0)
		config_upstreams_from_resolv(n, "/etc/resolv.conf");
	fit_fd_budget(n, true);
	if (rc == 0 && build_conf(n, &a))
		rc = -EINVAL;
	bool listen_same = n->nlisten == cur->nlisten;
	for (size_t i = 0; rc == 0 && listen_same && i < n->nlisten; i++)
		listen_same = same_addr(&n->listen[i], &cur->listen[i]);
	struct {
		const char *key;
		bool changed;
	} restart[] = {
	        {"listen", !listen_same},
	        {"db", strcmp(n->db, cur->db) != 0},
	        {"workers", n->workers != cur->workers},
	        {"metrics", n->has_metrics != cur->has_metrics ||
	                            (n->has_metrics && !same_addr(&n->metrics, &cur->metrics))},
	        {"user", strcmp(n->user, cur->user) != 0},
	        {"dnstap", strcmp(n->dnstap, cur->dnstap) != 0},
	        {"cache-size", n->cache_size != cur->cache_size},
	        {"cache-max-ttl", n->cache_max_ttl != cur->cache_max_ttl},
	        {"cache-negative-max-ttl", n->cache_neg_max_ttl != cur->cache_neg_max_ttl},
	        {"serve-stale", n->serve_stale != cur->serve_stale},
	};
	if (rc == 0) {
		for (size_t i = 0; i < sizeof(restart) / sizeof(restart[0]); i++)
			if (restart[i].changed)
				log_warn("event=reload key=%s status=needs-restart "
				         "kept=running-value",
				         restart[i].key);
		memcpy(n->listen, cur->listen, sizeof(n->listen));
		n->nlisten = cur->nlisten;
		memcpy(n->db, cur->db, sizeof(n->db));
		n->workers = cur->workers;
		n->metrics = cur->metrics, n->has_metrics = cur->has_metrics;
		memcpy(n->user, cur->user, sizeof(n->user));
		memcpy(n->dnstap, cur->dnstap, sizeof(n->dnstap));
		n->cache_size = cur->cache_size, n->cache_max_ttl = cur->cache_max_ttl;
		n->cache_neg_max_ttl = cur->cache_neg_max_ttl, n->serve_stale = cur->serve_stale;
		rc = srv_reload(s, n, &a, err);
	}
	if (rc) {
		log_error("event=reload status=failed reason=\"%s\" kept=running-configuration",
		          err);
		free(n);
		return rc;
	}
	log_set_level((log_level_t)n->log_level);
	log_info("event=reload status=applied ttl=%u upstreams=%zu allow=%zu nsid=%s "
	         "log_level=%d",
	         n->ttl, n->nupstream, n->acl.nallow, n->nsid[0] ? n->nsid : "-", n->log_level);
	free(n);
	return 0;
}

/* --user: every socket is bound; give up root for good, or refuse to go on. */
static int drop_privileges(const char *user)
{
	errno = 0;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		log_error("event=privileges status=failed user=%s reason=\"%s\"", user,
		          errno ? strerror(errno) : "no such user");
		return -1;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		log_error("event=privileges status=failed user=%s reason=\"refusing to serve as "
		          "root (uid or gid 0)\"",
		          user);
		return -1;
	}
	const char *step = NULL;
	if (setgroups(1, &pw->pw_gid))
		step = "setgroups";
	else if (setgid(pw->pw_gid))
		step = "setgid";
	else if (setuid(pw->pw_uid))
		step = "setuid";
	if (step) {
		log_error("event=privileges status=failed user=%s step=%s reason=\"%s\"%s", user,
		          step, strerror(errno),
		          errno == EPERM ? " hint=\"start internald as root to use --user\"" : "");
		return -1;
	}
	if (getuid() == 0 || geteuid() == 0 || getgid() == 0 || getegid() == 0 ||
	    getuid() != pw->pw_uid || getgid() != pw->pw_gid || setuid(0) == 0) {
		log_error("event=privileges status=failed user=%s reason=\"still root after "
		          "the drop\"",
		          user);
		return -1;
	}
	log_info("event=privileges status=dropped user=%s uid=%u gid=%u", user,
	         (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	return 0;
}

/* The metrics endpoint's view of the server (metrics.h's met_source_t); systemd is told
 * what the same probes say (notify.h's watcher). */
static int http_ready(void *arg, char *msg, size_t cap)
{
	return srv_ready(arg, msg, cap);
}
static int http_health(void *arg, char *msg, size_t cap)
{
	return srv_health(arg, msg, cap);
}
static int http_snapshot(void *arg, met_snapshot_t *out)
{
	return srv_metrics(arg, out);
}

/* --check-config: past the file and every value (config_parse_args), the user exists and
 * is not root, and the registry opens read-only as it would to serve. */
static int check_config(const config_t *c, cfg_problems_t *p)
{
	const char *what = c->file[0] ? c->file : "the command line";
	char in[PATH_MAX + 2] = ""; /* "FILE: " before a key of the file's */
	if (c->file[0])
		snprintf(in, sizeof(in), "%s: ", c->file);
	if (c->user[0]) {
		errno = 0;
		struct passwd *pw = getpwnam(c->user);
		if (!pw)
			config_problem(p, "%suser = %s: %s; want a user of this host", in, c->user,
			               errno ? strerror(errno) : "no such user");
		else if (pw->pw_uid == 0 || pw->pw_gid == 0)
			config_problem(p,
			               "%suser = %s: uid %u gid %u; want a user that is not root",
			               in, c->user, (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	}
	reg_t *reg;
	int rc = reg_open(&reg, c->db, REG_RDONLY, 0);
	if (rc)
		config_problem(
		        p, "%sdb = %s: cannot open the registry: %s%s", in, c->db, reg_strerror(rc),
		        rc == -ENOENT ? "; want a registry (internalctl --db DIR import FILE, "
		                        "or internalctl follow)"
		                      : "");
	else
		reg_close(reg);
	for (unsigned i = 0; i < p->n && i < CFG_PROBLEMS_MAX; i++)
		fprintf(stderr, "%s\n", p->msg[i]);
	if (p->n) {
		fprintf(stderr, "internald: %s: %u problem%s\n", what, p->n, p->n == 1 ? "" : "s");
		return 1;
	}
	printf("internald: %s: ok\n", what);
	return 0;
}

int main(int argc, char **argv)
{
	char err[CFG_ERR_MAX] = "";
	static cfg_problems_t probs;
	g_argc = argc, g_argv = argv;
	signal(SIGHUP, SIG_IGN); /* a reload asked for before the loop runs is not fatal */
	config_defaults(&cfg);
	int rc = config_parse_args(&cfg, argc, argv, &probs);
	if (rc == CONFIG_HELP)
		return fputs(config_usage, stdout) < 0;
	if (rc == CONFIG_VERSION)
		return VERSION_PRINT("internald") < 0;
	if (probs.usage) { /* only a usage error earns the usage */
		for (unsigned i = 0; i < probs.n && i < CFG_PROBLEMS_MAX; i++)
			fprintf(stderr, "internald: %s\n", probs.msg[i]);
		fputs(config_usage, stderr);
		return 2;
	}
	if (cfg.check_only)
		return check_config(&cfg, &probs);
	if (rc) {
		log_problems(&probs, "event=config status=failed");
		return 1;
	}
	log_set_level((log_level_t)cfg.log_level);
	log_info("event=start version=%s revision=%s pid=%d", INTERNALD_VERSION,
	         INTERNALD_REVISION[0] ? INTERNALD_REVISION : "-", (int)getpid());
	raise_fd_limit();
	fit_fd_budget(&cfg, false);

	if (cfg.nupstream == 0) {
		int n = config_upstreams_from_resolv(&cfg, "/etc/resolv.conf");
		if (n < 0)
			log_warn("event=no-upstream reason=\"/etc/resolv.conf: %s; nothing to "
			         "forward to\"",
			         strerror(-n));
	}
	if (build_conf(&cfg, &conf))
		return 1;
	if (!conf.forward)
		log_warn("event=no-upstream reason=\"no upstream resolvers: names outside "
		         ".internal get REFUSED\"");

	met_http_t *http = NULL;
	if (cfg.has_metrics &&
	    met_http_start(&http, &cfg.metrics, INTERNALD_VERSION, INTERNALD_REVISION, err)) {
		log_error("event=error reason=\"%s\"", err);
		return 1;
	}
	if (getenv("INTERNALD_TEST_HOOKS"))
		usleep(1500 * 1000); /* test hook: a slow start, so /ready can be seen 503 */

	for (size_t i = 0; i < cfg.nlisten; i++) {
		if (portcheck_free(&cfg.listen[i], err)) {
			log_error("event=error reason=\"%s\"", err);
			met_http_stop(http);
			return 1;
		}
	}

	reg_t *reg;
	if ((rc = reg_open(&reg, cfg.db, REG_RDONLY, 0))) {
		log_error("event=error reason=\"cannot open the registry at %s: %s\"%s", cfg.db,
		          reg_strerror(rc),
		          rc == -ENOENT
		                  ? " hint=\"create it with 'internalctl --db DIR import FILE'\""
		                  : "");
		met_http_stop(http);
		return 1;
	}
	check_registry_modes(cfg.db);
	int stale = reg_reader_check(reg);
	log_info("event=registry-open db=%s stale_readers_cleared=%d", cfg.db,
	         stale > 0 ? stale : 0);

	srv_t *srv;
	if ((rc = srv_create(&srv, &cfg, &conf, reg, err))) {
		log_error("event=error reason=\"%s\"", err);
		met_http_stop(http);
		reg_close(reg);
		return 1;
	}
	if (cfg.user[0] && drop_privileges(cfg.user)) {
		srv_free(srv);
		met_http_stop(http);
		reg_close(reg);
		return 1;
	}
	srv_on_reload(srv, reload, NULL);
	const met_source_t src = {
	        .arg = srv, .ready = http_ready, .health = http_health, .snapshot = http_snapshot};
	met_http_attach(http, &src);
	if ((rc = notify_watch_start(http_ready, http_health, srv)))
		log_warn("event=notify status=failed reason=\"%s\"", strerror(-rc));
	rc = srv_run(srv);
	notify_watch_stop();
	met_http_stop(http); /* before the server goes: a scrape reads its workers */
	srv_free(srv);
	reg_close(reg);
	log_info("event=stop status=%s", rc ? "error" : "clean");
	return rc ? 1 : 0;
}
