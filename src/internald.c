/*
 * internald — main(): read the configuration, open the registry read-only, start the
 * server (regions are registry records: nothing else to load). Thin by design: every piece lives in
 * its module.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "answer.h"
#include "config.h"
#include "log.h"
#include "registry.h"
#include "server.h"

static config_t cfg;
static ans_conf_t conf;

int main(int argc, char **argv)
{
	char err[CFG_ERR_MAX] = "";
	config_defaults(&cfg);
	int rc = config_parse_args(&cfg, argc, argv, err);
	if (rc == 1)
		return 0;
	if (rc) {
		fprintf(stderr, "internald: %s\n%s", err, config_usage);
		return 2;
	}
	log_set_level((log_level_t)cfg.log_level);

	conf.region = cfg.region;
	conf.region_len = strlen(cfg.region);
	if (cfg.nupstream == 0) {
		int n = config_upstreams_from_resolv(&cfg, "/etc/resolv.conf");
		if (n < 0)
			log_warn("/etc/resolv.conf: %s; nothing to forward to", strerror(-n));
	}
	conf.ttl = cfg.ttl;
	conf.nsid = cfg.nsid[0] ? cfg.nsid : NULL;
	conf.nsid_len = strlen(cfg.nsid);
	conf.forward = cfg.nupstream > 0;
	conf.acl = cfg.acl;
	if (!conf.forward)
		log_warn("no upstream resolvers: names outside .internal get REFUSED");

	reg_t *reg;
	if ((rc = reg_open(&reg, cfg.db, REG_RDONLY, 0))) {
		log_error("cannot open the registry at %s: %s%s", cfg.db, reg_strerror(rc),
		          rc == -ENOENT ? " (create it with 'internalctl --db DIR import FILE')"
		                        : "");
		return 1;
	}
	int stale = reg_reader_check(reg);
	if (stale > 0)
		log_info("cleared %d registry reader slots of dead processes", stale);

	srv_t *srv;
	if ((rc = srv_create(&srv, &cfg, &conf, reg, err))) {
		log_error("%s", err);
		reg_close(reg);
		return 1;
	}
	rc = srv_run(srv);
	srv_free(srv);
	reg_close(reg);
	log_info("stopped");
	return rc ? 1 : 0;
}
