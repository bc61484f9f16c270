/*
 * config — internald's settings from its command line and its config file
 * (internald.conf(5)): the file takes the long options' names as keys ("listen =
 * [::1]:5353"); the command line wins, and a repeatable option given there replaces
 * the file's list. One table in config.c holds every key (name, what it takes, its
 * range, its handler) for both. Pure: it parses text, it opens nothing but the config
 * file, and it never stops at the first problem: every one is reported, each naming the
 * file, the line, the key, the value and what is allowed
 * ("internald.conf:2: ttl = 999999: want 0..86400").
 */
#ifndef INTERNALD_CONFIG_H
#define INTERNALD_CONFIG_H

#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "org.h"

#define CFG_LISTEN_MAX   16
#define CFG_UPSTREAM_MAX 8
#define CFG_ERR_MAX      512
#define CFG_PROBLEMS_MAX 32
#define CFG_ADDR_TEXT    (INET6_ADDRSTRLEN + 10) /* an address as written, "[...]:port" */

typedef struct {
	struct sockaddr_storage ss; /* AF_INET6 or AF_INET, port set */
	socklen_t len;
	char text[CFG_ADDR_TEXT]; /* as the user wrote it, for messages */
} cfg_addr_t;

typedef struct {
	char db[PATH_MAX];
	cfg_addr_t listen[CFG_LISTEN_MAX];
	size_t nlisten;
	cfg_addr_t upstream[CFG_UPSTREAM_MAX];
	size_t nupstream;
	char default_org[64]; /* "" for none */
	char region[16];      /* the server's own region, "" for none */
	unsigned workers;     /* 0: one per core */
	uint32_t ttl;
	char nsid[128]; /* "" for none */
	int log_level;
	org_acl_t acl; /* empty: the default list */
	unsigned tcp_idle_ms;
	unsigned tcp_max_conns;
	unsigned tcp_max_per_source;  /* TCP connections one source may hold (process-wide) */
	unsigned tcp_io_ms;           /* a frame begun must be whole within this */
	unsigned upstream_timeout_ms; /* per try */
	unsigned upstream_budget_ms;  /* all tries of one query */
	unsigned max_inflight;        /* forwarded queries in flight per worker */
	unsigned upstream_edns_size;  /* the EDNS payload size asked of upstreams */
	cfg_addr_t metrics;           /* --metrics: the HTTP listener (port default 9153) */
	bool has_metrics;             /* off unless set */
	char user[64];                /* --user: drop to it after binding, "" for none */
	char dnstap[PATH_MAX + 8];    /* "unix:PATH", "" for off (include/dnstap.h) */
	size_t cache_size;            /* bytes of the forwarding cache; 0: none */
	unsigned cache_max_ttl;       /* seconds a positive answer is kept at most */
	unsigned cache_neg_max_ttl;   /* seconds an NXDOMAIN/NODATA is kept at most */
	unsigned serve_stale;         /* seconds past expiry an answer may serve stale */
	unsigned client_timer_ms;     /* a client waiting this long gets a stale answer */
	char file[PATH_MAX];          /* -c FILE, "" for none */
	bool check_only;              /* --check-config: check, report, exit */
} config_t;

/* Every problem config_parse_args found, in the order met. */
typedef struct {
	unsigned n; /* problems found; only the first CFG_PROBLEMS_MAX are kept */
	bool usage; /* one of them is a usage error (unknown option, a missing value) */
	char msg[CFG_PROBLEMS_MAX][CFG_ERR_MAX];
} cfg_problems_t;

/* What config_parse_args asks its caller to do instead of serving. */
#define CONFIG_HELP    1 /* --help: print config_usage on stdout, exit 0 */
#define CONFIG_VERSION 2 /* --version: print the version, exit 0 */

/* Compile-time defaults (db /var/lib/internald, listen [fdaa::3]:53, ttl 5, ...). */
void config_defaults(config_t *c);

/*
 * Reads -c FILE (if any), then the rest of argv over it (getopt_long: "--key value" and
 * "--key=value" alike). Returns 0, CONFIG_HELP, CONFIG_VERSION, or -EINVAL with every
 * problem in *p (p->usage when the command line itself is wrong). With --check-config,
 * c->check_only is set whatever the outcome. Not thread-safe (getopt's globals).
 */
int config_parse_args(config_t *c, int argc, char **argv, cfg_problems_t *p);

/* Adds one problem to p (printf-like); counts it even when p is full. */
void config_problem(cfg_problems_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "[v6]:port", "v4:port", or a bare address (port default_port). 0 or -EINVAL. */
int config_parse_addr(const char *s, uint16_t default_port, cfg_addr_t *out);

/* Nameservers of a resolv.conf into c->upstream, skipping our own listen addresses.
 * Returns how many were added, or -errno if the file cannot be read. */
int config_upstreams_from_resolv(config_t *c, const char *path);

extern const char config_usage[];

#endif
