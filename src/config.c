/*
 * config.c — options and the config file. One table of keys serves both, so the file
 * and the command line can never disagree about a name.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"

const char config_usage[] =
        "usage: internald [-c FILE] [--db DIR] [--listen ADDR]... [--default-org SLUG]\n"
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

static int num(const char *v, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (errno || *end || end == v || v[0] == '-' || n < min || n > max)
		return -EINVAL;
	*out = n;
	return 0;
}

typedef struct {
	bool cli;                                 /* applying the command line now */
	bool cli_listen, cli_upstream, cli_allow; /* lists the command line has started */
} apply_t;

static int copy(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return -EINVAL;
	strcpy(dst, v);
	return 0;
}

/* One key = value, from either source. err: what is wrong with the value. */
static int apply(config_t *c, apply_t *a, const char *key, const char *v, const char **why)
{
	unsigned long n;
	*why = "bad value";
	if (strcmp(key, "db") == 0)
		return copy(c->db, sizeof(c->db), v);
	if (strcmp(key, "default-org") == 0)
		return copy(c->default_org, sizeof(c->default_org), v);
	if (strcmp(key, "region") == 0)
		return copy(c->region, sizeof(c->region), v);
	if (strcmp(key, "regions") == 0) {
		*why = "gone: regions are registry records now (internalctl import "
		       "zones/regions.jsonl)";
		return -EINVAL;
	}
	if (strcmp(key, "nsid") == 0)
		return copy(c->nsid, sizeof(c->nsid), v);
	if (strcmp(key, "user") == 0) {
		*why = "want a user name";
		return v[0] ? copy(c->user, sizeof(c->user), v) : -EINVAL;
	}
	if (strcmp(key, "metrics") == 0) {
		*why = "want [v6]:port, v4:port or an address (port 9153)";
		if (config_parse_addr(v, 9153, &c->metrics))
			return -EINVAL;
		c->has_metrics = true;
		return 0;
	}
	if (strcmp(key, "dnstap") == 0) {
		*why = "want unix:PATH (the collector's socket)";
		if (strncmp(v, "unix:", 5) != 0 || !v[5])
			return -EINVAL;
		return copy(c->dnstap, sizeof(c->dnstap), v);
	}
	if (strcmp(key, "log-level") == 0) {
		*why = "want error, warn, info or debug";
		return (c->log_level = log_parse_level(v)) < 0 ? -EINVAL : 0;
	}
	if (strcmp(key, "listen") == 0 || strcmp(key, "upstream") == 0) {
		bool listen = key[0] == 'l';
		bool *started = listen ? &a->cli_listen : &a->cli_upstream;
		size_t *cnt = listen ? &c->nlisten : &c->nupstream;
		size_t max = listen ? CFG_LISTEN_MAX : CFG_UPSTREAM_MAX;
		if (a->cli && !*started)
			*started = true, *cnt = 0;
		*why = *cnt == max ? "too many addresses" : "want [v6]:port, v4:port or an address";
		if (*cnt == max)
			return -EINVAL;
		cfg_addr_t *dst = listen ? &c->listen[*cnt] : &c->upstream[*cnt];
		if (config_parse_addr(v, 53, dst))
			return -EINVAL;
		for (size_t i = 0; i < *cnt; i++) /* one upstream, one set of counters */
			if (!listen && c->upstream[i].len == dst->len &&
			    memcmp(&c->upstream[i].ss, &dst->ss, dst->len) == 0) {
				*why = "this upstream is given twice";
				return -EINVAL;
			}
		(*cnt)++;
		return 0;
	}
	if (strcmp(key, "allow") == 0) {
		if (a->cli && !a->cli_allow)
			a->cli_allow = true, c->acl.nallow = 0;
		*why = c->acl.nallow == ORG_ALLOW_MAX ? "too many prefixes"
		                                      : "want an address/prefix";
		if (c->acl.nallow == ORG_ALLOW_MAX ||
		    org_parse_prefix(v, &c->acl.allow[c->acl.nallow]))
			return -EINVAL;
		c->acl.nallow++;
		return 0;
	}
	if (strcmp(key, "cache-size") == 0) {
		char *end;
		errno = 0;
		unsigned long long sz = strtoull(v, &end, 10);
		unsigned shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
		*why = "want bytes (a K, M or G suffix), 0 (no cache) or at least 256K";
		if (errno || end == v || v[0] == '-' || (shift && end[1]) || (!shift && *end) ||
		    sz > (1ULL << 40) >> shift || (sz && (sz << shift) < CACHE_MIN_BYTES))
			return -EINVAL;
		c->cache_size = (size_t)(sz << shift);
		return 0;
	}
	struct {
		const char *key;
		unsigned *dst;
		unsigned long min, max;
	} nums[] = {
	        {"workers", &c->workers, 1, 256},
	        {"ttl", &c->ttl, 0, 86400},
	        {"tcp-idle-timeout", &c->tcp_idle_ms, 100, 3600000},
	        {"tcp-max-connections", &c->tcp_max_conns, 1, 1000000},
	        {"tcp-max-per-source", &c->tcp_max_per_source, 1, 1000000},
	        {"tcp-io-timeout", &c->tcp_io_ms, 100, 3600000},
	        {"upstream-timeout", &c->upstream_timeout_ms, 10, 60000},
	        {"upstream-budget", &c->upstream_budget_ms, 10, 600000},
	        {"max-inflight", &c->max_inflight, 1, 1000000},
	        {"upstream-edns-size", &c->upstream_edns_size, 512, 4096},
	        {"cache-max-ttl", &c->cache_max_ttl, 1, 604800},
	        {"cache-negative-max-ttl", &c->cache_neg_max_ttl, 1, 86400},
	        {"serve-stale", &c->serve_stale, 0, 604800},
	        {"client-timer", &c->client_timer_ms, 10, 600000},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		if (strcmp(key, nums[i].key))
			continue;
		*why = "want a whole number in range";
		if (num(v, nums[i].min, nums[i].max, &n))
			return -EINVAL;
		*nums[i].dst = (unsigned)n;
		return 0;
	}
	*why = "unknown option";
	return -EINVAL;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

static int parse_file(config_t *c, apply_t *a, const char *path, char *err)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, CFG_ERR_MAX, "%s: %s", path, strerror(errno));
		return -EINVAL;
	}
	char *line = NULL; /* a line of any length: a long comment is one line */
	size_t cap = 0;
	unsigned no = 0;
	int rc = 0;
	while (!rc && getline(&line, &cap, f) >= 0) {
		no++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *s = trim(line);
		if (!*s)
			continue;
		char *eq = strchr(s, '='), *why_s;
		const char *why = "want key = value";
		if (eq) {
			*eq = '\0';
			why_s = trim(s);
			if (apply(c, a, why_s, trim(eq + 1), &why) == 0)
				continue;
		}
		snprintf(err, CFG_ERR_MAX, "%s:%u: %s", path, no, why);
		rc = -EINVAL;
	}
	free(line);
	fclose(f);
	return rc;
}

int config_parse_args(config_t *c, int argc, char **argv, char *err)
{
	apply_t a = {0};
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(config_usage, stdout);
			return 1;
		}
		if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0)) {
			if (i + 1 == argc) {
				snprintf(err, CFG_ERR_MAX, "%s needs a file", argv[i]);
				return -EINVAL;
			}
			int rc = parse_file(c, &a, argv[i + 1], err);
			if (rc)
				return rc;
		}
	}
	a.cli = true;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
			i++;
			continue;
		}
		if (strncmp(argv[i], "--", 2) != 0) {
			snprintf(err, CFG_ERR_MAX, "unexpected argument '%s'", argv[i]);
			return -EINVAL;
		}
		char key[64];
		const char *v, *eq = strchr(argv[i], '='), *why;
		if (eq) {
			snprintf(key, sizeof(key), "%.*s", (int)(eq - argv[i] - 2), argv[i] + 2);
			v = eq + 1;
		} else {
			snprintf(key, sizeof(key), "%s", argv[i] + 2);
			if (i + 1 == argc) {
				snprintf(err, CFG_ERR_MAX, "%s needs a value", argv[i]);
				return -EINVAL;
			}
			v = argv[++i];
		}
		if (apply(c, &a, key, v, &why)) {
			snprintf(err, CFG_ERR_MAX, "--%s %s: %s", key, v, why);
			return -EINVAL;
		}
	}
	if (c->nlisten == 0)
		config_parse_addr("[fdaa::3]:53", 53, &c->listen[c->nlisten++]);
	org_acl_default(&c->acl);
	return 0;
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
