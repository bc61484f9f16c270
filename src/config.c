/*
 * config.c — options and the config file. One table of keys (opts[]: name, handler,
 * field, range, what is allowed) serves both, so the file and the command line can never
 * disagree about a name, a range or a message. It never stops at the first problem.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"

const char config_usage[] =
        "usage: internald [-c FILE] [--check-config] [--version] [--help]\n"
        "                 [--db DIR] [--listen ADDR]... [--default-org SLUG]\n"
        "                 [--region CODE] [--upstream ADDR]... [--workers N]\n"
        "                 [--ttl SECONDS] [--nsid TEXT] [--allow PREFIX]...\n"
        "                 [--tcp-idle-timeout MS] [--tcp-max-connections N]\n"
        "                 [--tcp-max-per-source N] [--tcp-io-timeout MS]\n"
        "                 [--upstream-timeout MS] [--upstream-budget MS] [--max-inflight N]\n"
        "                 [--upstream-edns-size N]\n"
        "                 [--log-level error|warn|info|debug] [--dnstap unix:PATH]\n"
        "                 [--cache-size BYTES[K|M|G]] [--cache-max-ttl S]\n"
        "                 [--cache-negative-max-ttl S] [--serve-stale S] [--client-timer MS]\n"
        "                 [--metrics ADDR] [--user NAME]\n"
        "ADDR is [v6]:port, v4:port or a bare address (port 53). See internald(8).\n";

void config_defaults(config_t *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->db, sizeof(c->db), "/var/lib/internald");
	c->ttl = 5;
	c->log_level = LOG_INFO;
	c->tcp_idle_ms = 10000;
	c->tcp_max_conns = 1024;
	c->tcp_max_per_source = 64;
	c->tcp_io_ms = 2000;
	c->upstream_timeout_ms = 1000;
	c->upstream_budget_ms = 3000;
	c->max_inflight = 1024;
	c->upstream_edns_size = 1232;
	c->cache_size = 64u << 20;
	c->cache_max_ttl = 86400;
	c->cache_neg_max_ttl = 3600;
	c->serve_stale = 86400;
	c->client_timer_ms = 1800;
}

int config_parse_addr(const char *s, uint16_t port, cfg_addr_t *out)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *p = NULL;
	memset(out, 0, sizeof(*out));
	snprintf(out->text, sizeof(out->text), "%s", s);
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || (size_t)(end - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(end - s - 1));
		host[end - s - 1] = '\0';
		if (end[1] == ':')
			p = end + 2;
		else if (end[1])
			return -EINVAL;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && !strchr(colon + 1, ':')) { /* v4:port */
			if ((size_t)(colon - s) >= sizeof(host))
				return -EINVAL;
			memcpy(host, s, (size_t)(colon - s));
			host[colon - s] = '\0';
			p = colon + 1;
		} else {
			if (strlen(s) >= sizeof(host))
				return -EINVAL;
			strcpy(host, s);
		}
	}
	if (p) {
		char *end;
		long v = strtol(p, &end, 10);
		if (*end || end == p || v < 0 || v > 65535)
			return -EINVAL;
		port = (uint16_t)v;
	}
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&out->ss;
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		out->len = sizeof(*a6);
	} else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1 && s[0] != '[') {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		out->len = sizeof(*a4);
	} else {
		return -EINVAL;
	}
	return 0;
}

/* ---- the table of keys: one row each, for the file and the command line alike ---------- */

typedef struct cfg_opt cfg_opt_t;

/* Sets one value; 0, or -EINVAL with what is allowed in why (why holds o->want before). */
typedef int (*cfg_set_fn)(config_t *c, const cfg_opt_t *o, const char *v, char *why);

struct cfg_opt {
	const char *name;
	cfg_set_fn set;
	size_t off;             /* offsetof(config_t, the field) */
	size_t size;            /* of the field (text) */
	unsigned long min, max; /* numbers: the range allowed */
	bool repeat;            /* listen, upstream, allow: one line each, a list */
	const char *want;       /* what is allowed, for messages ("" for numbers: min..max) */
};

#define FIELD(f) offsetof(config_t, f), sizeof(((config_t *)0)->f)
#define WHY(...) snprintf(why, CFG_ERR_MAX, __VA_ARGS__)

static int set_text(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	if (strlen(v) >= o->size) {
		WHY("want %s of at most %zu bytes", o->want, o->size - 1);
		return -EINVAL;
	}
	strcpy((char *)c + o->off, v);
	return 0;
}

static int set_uint(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (errno || *end || end == v || v[0] == '-' || v[0] == '+' || n < o->min || n > o->max) {
		WHY("want %lu..%lu%s%s", o->min, o->max, o->want[0] ? " " : "", o->want);
		return -EINVAL;
	}
	*(unsigned *)((char *)c + o->off) = (unsigned)n;
	return 0;
}

static int set_log_level(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	(void)o, (void)why;
	int level = log_parse_level(v);
	if (level < 0)
		return -EINVAL;
	c->log_level = level;
	return 0;
}

/* "::1:5353" is the address ::0.1.83.83 as much as port 5353 of ::1: a bare IPv6
 * address that would still be one without its last ":N" is refused as ambiguous, and
 * brackets say which was meant. (resolv.conf's bare addresses never carry a port.) */
static bool ambiguous_v6(const char *v)
{
	const char *colon = strrchr(v, ':');
	if (v[0] == '[' || !colon || !strchr(v, ':') || strchr(v, ':') == colon)
		return false;
	if (!colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return false;
	char head[INET6_ADDRSTRLEN + 1];
	struct in6_addr a;
	if ((size_t)(colon - v) >= sizeof(head))
		return false;
	memcpy(head, v, (size_t)(colon - v));
	head[colon - v] = '\0';
	return inet_pton(AF_INET6, head, &a) == 1;
}

/* An address for listen, upstream or metrics. */
static int parse_addr(const char *v, uint16_t port, cfg_addr_t *out, char *why)
{
	if (ambiguous_v6(v)) {
		const char *colon = strrchr(v, ':');
		WHY("want [v6]:port: write [%.*s]:%s for a port, [%s] for the address",
		    (int)(colon - v), v, colon + 1, v);
		return -EINVAL;
	}
	return config_parse_addr(v, port, out);
}

/* The command line's list replaces the file's: the first --listen empties it. */
typedef struct {
	bool cli;                                 /* applying the command line now */
	bool cli_listen, cli_upstream, cli_allow; /* lists the command line has started */
} apply_t;
static apply_t g_apply; /* one parse at a time: config_parse_args is not thread-safe */

static int set_addrs(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	bool listen = o->name[0] == 'l';
	bool *started = listen ? &g_apply.cli_listen : &g_apply.cli_upstream;
	size_t *cnt = listen ? &c->nlisten : &c->nupstream;
	size_t max = listen ? CFG_LISTEN_MAX : CFG_UPSTREAM_MAX;
	if (g_apply.cli && !*started)
		*started = true, *cnt = 0;
	if (*cnt == max) {
		WHY("want at most %zu %s addresses", max, o->name);
		return -EINVAL;
	}
	cfg_addr_t *dst = listen ? &c->listen[*cnt] : &c->upstream[*cnt];
	if (parse_addr(v, 53, dst, why))
		return -EINVAL;
	for (size_t i = 0; i < *cnt; i++) /* one upstream, one set of counters */
		if (!listen && c->upstream[i].len == dst->len &&
		    memcmp(&c->upstream[i].ss, &dst->ss, dst->len) == 0) {
			WHY("this upstream is given twice; want each once");
			return -EINVAL;
		}
	(*cnt)++;
	return 0;
}

static int set_allow(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	(void)o;
	if (g_apply.cli && !g_apply.cli_allow)
		g_apply.cli_allow = true, c->acl.nallow = 0;
	if (c->acl.nallow == ORG_ALLOW_MAX) {
		WHY("want at most %d prefixes", ORG_ALLOW_MAX);
		return -EINVAL;
	}
	if (org_parse_prefix(v, &c->acl.allow[c->acl.nallow]))
		return -EINVAL;
	c->acl.nallow++;
	return 0;
}

static int set_metrics(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	(void)o;
	if (parse_addr(v, 9153, &c->metrics, why))
		return -EINVAL;
	c->has_metrics = true;
	return 0;
}

static int set_dnstap(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	if (strncmp(v, "unix:", 5) != 0 || !v[5])
		return -EINVAL;
	return set_text(c, o, v, why);
}

static int set_cache_size(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	(void)o, (void)why;
	char *end;
	errno = 0;
	unsigned long long sz = strtoull(v, &end, 10);
	unsigned shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
	if (errno || end == v || v[0] == '-' || v[0] == '+' || (shift && end[1]) ||
	    (!shift && *end) || sz > (1ULL << 40) >> shift ||
	    (sz && (sz << shift) < CACHE_MIN_BYTES))
		return -EINVAL;
	c->cache_size = (size_t)(sz << shift);
	return 0;
}

static int set_gone(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	(void)c, (void)o, (void)v, (void)why;
	return -EINVAL;
}

#define ADDR_WANT "want [v6]:port, v4:port or an address"
static const cfg_opt_t opts[] = {
        {"db", set_text, FIELD(db), 0, 0, false, "want a directory"},
        {"listen", set_addrs, 0, 0, 0, 0, true, ADDR_WANT " (port 53)"},
        {"upstream", set_addrs, 0, 0, 0, 0, true, ADDR_WANT " (port 53)"},
        {"default-org", set_text, FIELD(default_org), 0, 0, false, "want an org slug"},
        {"region", set_text, FIELD(region), 0, 0, false, "want a region code"},
        {"regions", set_gone, 0, 0, 0, 0, false,
         "gone: regions are registry records now (internalctl import zones/regions.jsonl)"},
        {"workers", set_uint, FIELD(workers), 1, 256, false, ""},
        {"ttl", set_uint, FIELD(ttl), 0, 86400, false, ""},
        {"nsid", set_text, FIELD(nsid), 0, 0, false, "want a text"},
        {"allow", set_allow, 0, 0, 0, 0, true, "want an address/prefix"},
        {"tcp-idle-timeout", set_uint, FIELD(tcp_idle_ms), 100, 3600000, false, "ms"},
        {"tcp-max-connections", set_uint, FIELD(tcp_max_conns), 1, 1000000, false, ""},
        {"tcp-max-per-source", set_uint, FIELD(tcp_max_per_source), 1, 1000000, false, ""},
        {"tcp-io-timeout", set_uint, FIELD(tcp_io_ms), 100, 3600000, false, "ms"},
        {"upstream-timeout", set_uint, FIELD(upstream_timeout_ms), 10, 60000, false, "ms"},
        {"upstream-budget", set_uint, FIELD(upstream_budget_ms), 10, 600000, false, "ms"},
        {"max-inflight", set_uint, FIELD(max_inflight), 1, 1000000, false, ""},
        {"upstream-edns-size", set_uint, FIELD(upstream_edns_size), 512, 4096, false, "bytes"},
        {"cache-size", set_cache_size, 0, 0, 0, 0, false,
         "want bytes (a K, M or G suffix), 0 (no cache) or at least 256K"},
        {"cache-max-ttl", set_uint, FIELD(cache_max_ttl), 1, 604800, false, "seconds"},
        {"cache-negative-max-ttl", set_uint, FIELD(cache_neg_max_ttl), 1, 86400, false, "seconds"},
        {"serve-stale", set_uint, FIELD(serve_stale), 0, 604800, false, "seconds"},
        {"client-timer", set_uint, FIELD(client_timer_ms), 10, 600000, false, "ms"},
        {"log-level", set_log_level, 0, 0, 0, 0, false, "want error, warn, info or debug"},
        {"dnstap", set_dnstap, FIELD(dnstap), 0, 0, false,
         "want unix:PATH (the collector's socket)"},
        {"metrics", set_metrics, 0, 0, 0, 0, false, ADDR_WANT " (port 9153)"},
        {"user", set_text, FIELD(user), 0, 0, false, "want a user name"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const cfg_opt_t *find_opt(const char *key)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opts[i].name, key) == 0)
			return &opts[i];
	return NULL;
}

void config_problem(cfg_problems_t *p, const char *fmt, ...)
{
	if (p->n < CFG_PROBLEMS_MAX) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->msg[p->n], CFG_ERR_MAX, fmt, ap);
		va_end(ap);
	}
	p->n++;
}

/* One value of o; 0, or -EINVAL with what is allowed in why. An empty value is never
 * one: "db =" would otherwise fail much later, somewhere else. */
static int apply(config_t *c, const cfg_opt_t *o, const char *v, char *why)
{
	snprintf(why, CFG_ERR_MAX, "%s", o->want);
	if (!v[0]) {
		if (o->set == set_uint)
			WHY("empty; want %lu..%lu", o->min, o->max);
		else
			WHY("empty; %s", o->want);
		return -EINVAL;
	}
	return o->set(c, o, v, why);
}

/* ---- the file: internald.conf(5) ----------------------------------------------------- */

/* One line split into key and value in place. 0 (blank or comment: *key NULL), or
 * -EINVAL with what is wrong in why. Outside double quotes '#' starts a comment; a
 * quoted value keeps '#', '\"' and '\\' stand for themselves, and the quotes are not
 * part of the value. */
static int split_line(char *line, char **key, char **value, char *why)
{
	*key = *value = NULL;
	char *s = line + strspn(line, " \t");
	if (!*s || *s == '#' || *s == '\n' || *s == '\r')
		return 0;
	char *eq = strchr(s, '=');
	char *hash = strchr(s, '#');
	if (!eq || (hash && hash < eq)) {
		s[strcspn(s, "\r\n")] = '\0';
		WHY("%s: want key = value", s);
		return -EINVAL;
	}
	char *k = eq;
	while (k > s && (k[-1] == ' ' || k[-1] == '\t'))
		k--;
	*k = '\0';
	*key = s;
	char *v = eq + 1 + strspn(eq + 1, " \t"), *out = v;
	if (*v == '"') {
		char *r = v + 1;
		while (*r && *r != '"')
			r += r[0] == '\\' && (r[1] == '"' || r[1] == '\\') ? 2 : 1;
		if (*r != '"') {
			v[strcspn(v, "\r\n")] = '\0';
			WHY("%s = %s: the quote is not closed; want \"TEXT\"", s, v);
			return -EINVAL;
		}
		for (char *q = v + 1; q < r; q++) {
			if (*q == '\\' && (q[1] == '"' || q[1] == '\\'))
				q++;
			*out++ = *q;
		}
		char *rest = r + 1 + strspn(r + 1, " \t\r\n");
		if (*rest && *rest != '#') {
			rest[strcspn(rest, "\r\n")] = '\0';
			WHY("%s: '%s' after the closing quote; want a comment or nothing", s, rest);
			return -EINVAL;
		}
		*out = '\0';
	} else {
		v[strcspn(v, "#\r\n")] = '\0';
		size_t n = strlen(v);
		while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			v[--n] = '\0';
	}
	*value = v;
	return 0;
}

static void parse_file(config_t *c, const char *path, cfg_problems_t *p)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		config_problem(p, "%s: %s", path, strerror(errno));
		return;
	}
	unsigned seen[NOPTS] = {0}; /* the line each key was set on */
	char *line = NULL;          /* a line of any length: a long comment is one line */
	size_t cap = 0;
	unsigned no = 0;
	char why[CFG_ERR_MAX];
	while (getline(&line, &cap, f) >= 0) {
		no++;
		char *key, *v;
		if (split_line(line, &key, &v, why)) {
			config_problem(p, "%s:%u: %s", path, no, why);
			continue;
		}
		if (!key)
			continue;
		const cfg_opt_t *o = find_opt(key);
		const char *shown = v[0] ? v : "\"\"";
		if (!o) {
			config_problem(p,
			               "%s:%u: %s = %s: unknown key; want one of internald.conf(5)",
			               path, no, key, shown);
			continue;
		}
		if (apply(c, o, v, why)) {
			config_problem(p, "%s:%u: %s = %s: %s", path, no, key, shown, why);
			continue;
		}
		size_t i = (size_t)(o - opts);
		if (seen[i] && !o->repeat)
			config_problem(p,
			               "%s:%u: %s = %s: %s is set on line %u already; want it once",
			               path, no, key, shown, key, seen[i]);
		seen[i] = no;
	}
	free(line);
	fclose(f);
}

/* ---- the command line: getopt_long over the same table --------------------------------- */

enum { OPT_HELP = 'h', OPT_CONFIG = 'c', OPT_VERSION = 256, OPT_CHECK, OPT_TABLE };

int config_parse_args(config_t *c, int argc, char **argv, cfg_problems_t *p)
{
	struct option lo[NOPTS + 5];
	size_t n = 0;
	for (size_t i = 0; i < NOPTS; i++)
		lo[n++] =
		        (struct option){opts[i].name, required_argument, NULL, OPT_TABLE + (int)i};
	lo[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
	lo[n++] = (struct option){"check-config", no_argument, NULL, OPT_CHECK};
	lo[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
	lo[n++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
	lo[n] = (struct option){0};
	memset(p, 0, sizeof(*p));
	g_apply = (apply_t){0};
	c->file[0] = '\0';
	/* first pass: what to do, and the file; '+' stops at the first argument that is not
	 * an option, ':' reports a missing value apart from an unknown option */
	opterr = 0;
	optind = 0;
	int ch, todo = 0;
	while ((ch = getopt_long(argc, argv, "+:hc:", lo, NULL)) != -1) {
		if (ch == OPT_HELP)
			todo = todo ? todo : CONFIG_HELP;
		else if (ch == OPT_VERSION)
			todo = todo ? todo : CONFIG_VERSION;
		else if (ch == OPT_CHECK)
			c->check_only = true;
		else if (ch == OPT_CONFIG && strlen(optarg) < sizeof(c->file))
			strcpy(c->file, optarg);
		else if (ch == OPT_CONFIG)
			config_problem(p, "-c %.64s...: want a path of at most %zu bytes", optarg,
			               sizeof(c->file) - 1);
		else if (ch == '?' || ch == ':') {
			const char *arg = argv[optind - 1];
			p->usage = true;
			if (ch == ':')
				config_problem(p, "%s needs a value", arg);
			else if (optopt && optopt < 256)
				config_problem(p, "unknown option '-%c'", optopt);
			else
				config_problem(p, "unknown option '%s'", arg);
		}
	}
	if (optind < argc) {
		p->usage = true;
		config_problem(p, "unexpected argument '%s'", argv[optind]);
	}
	if (todo)
		return todo;
	if (p->usage)
		return -EINVAL;
	if (c->file[0])
		parse_file(c, c->file, p);
	/* second pass: the options over the file */
	g_apply.cli = true;
	optind = 0;
	char why[CFG_ERR_MAX];
	while ((ch = getopt_long(argc, argv, "+:hc:", lo, NULL)) != -1) {
		if (ch < OPT_TABLE)
			continue;
		const cfg_opt_t *o = &opts[ch - OPT_TABLE];
		if (apply(c, o, optarg, why))
			config_problem(p, "--%s %s: %s", o->name, optarg[0] ? optarg : "\"\"", why);
	}
	if (c->nlisten == 0)
		config_parse_addr("[fdaa::3]:53", 53, &c->listen[c->nlisten++]);
	org_acl_default(&c->acl);
	return p->n ? -EINVAL : 0;
}

/* The same address and port: a resolver on ::1 port 53 is not us on ::1 port 5353. */
static bool same_socket(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
	}
	const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
	return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
}

int config_upstreams_from_resolv(config_t *c, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char line[512];
	int added = 0;
	while (fgets(line, sizeof(line), f) && c->nupstream < CFG_UPSTREAM_MAX) {
		char addr[INET6_ADDRSTRLEN + 1];
		if (sscanf(line, " nameserver %46s", addr) != 1)
			continue;
		char *pct = strchr(addr, '%'); /* a zone index is not ours to keep */
		if (pct)
			*pct = '\0';
		cfg_addr_t u;
		if (config_parse_addr(addr, 53, &u))
			continue;
		bool ours = false;
		for (size_t i = 0; i < c->nlisten && !ours; i++)
			ours = same_socket(&u.ss, &c->listen[i].ss);
		if (ours)
			continue;
		c->upstream[c->nupstream++] = u;
		added++;
	}
	fclose(f);
	return added;
}
