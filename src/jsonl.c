/*
 * jsonl.c — JSON Lines in and out of the registry, with jansson.
 *
 * Import runs in two steps so that bad input never reaches the registry: jsonl_parse
 * reads and validates the whole file into memory (an arena of records), jsonl_apply
 * writes it in one transaction and checks what only the registry knows. Every refusal
 * names file, line and field. This file must never write outside the transaction it
 * is given.
 */
#include "jsonl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl_impl.h"
#include "org.h"

/* ---- parsing ------------------------------------------------------------------------------ */

/* Parses one line (len bytes, not necessarily NUL-terminated) into the next record. */
static int parse_line(ctx_t *c, const char *line, size_t len)
{
	jsonl_t *j = c->j;
	size_t blank = 0;
	while (blank < len && line[blank] && strchr(" \t\r\n", line[blank]))
		blank++;
	if (blank == len)
		return 0; /* blank lines are allowed */
	json_error_t jerr;
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return fail(c, NULL, "malformed JSON at column %d: %s", jerr.column, jerr.text);
	if (!json_is_object(o)) {
		json_decref(o);
		return fail(c, NULL, "each line must be one JSON object");
	}
	if (j->n == j->cap) {
		size_t ncap = j->cap ? 2 * j->cap : 1024;
		rec_t *recs = realloc(j->recs, ncap * sizeof(*recs));
		if (!recs) {
			json_decref(o);
			return -ENOMEM;
		}
		j->recs = recs, j->cap = ncap;
	}
	rec_t *r = &j->recs[j->n];
	memset(r, 0, sizeof(*r));
	int rc = parse_record(c, o, r);
	json_decref(o);
	if (!rc)
		j->n++;
	return rc;
}

/* The lines of a FILE, for jsonl_parse_lines. */
typedef struct {
	FILE *f;
	char *line;
	size_t cap;
} file_lines_t;

static const char *next_file_line(void *arg, size_t *len)
{
	file_lines_t *fl = arg;
	ssize_t n = getline(&fl->line, &fl->cap, fl->f);
	if (n < 0)
		return NULL;
	*len = (size_t)n;
	return fl->line;
}

int jsonl_parse_lines(jsonl_next_fn next, void *arg, const char *name, jsonl_t **out, char *err)
{
	jsonl_t *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	snprintf(j->name, sizeof(j->name), "%s", name);
	ctx_t c = {.j = j, .err = err};
	const char *line;
	size_t len;
	int rc = 0;
	err[0] = '\0';
	while (!rc && (line = next(arg, &len))) {
		c.line++;
		rc = parse_line(&c, line, len);
	}
	if (rc == -ENOMEM && !err[0])
		snprintf(err, JSONL_ERR_MAX, "%s:%u: out of memory", name, c.line);
	if (rc) {
		jsonl_free(j);
		return rc;
	}
	*out = j;
	return 0;
}

int jsonl_parse(FILE *f, const char *name, jsonl_t **out, char *err)
{
	file_lines_t fl = {.f = f};
	int rc = jsonl_parse_lines(next_file_line, &fl, name, out, err);
	free(fl.line);
	if (!rc && ferror(f)) {
		jsonl_free(*out);
		*out = NULL;
		snprintf(err, JSONL_ERR_MAX, "%s: read error", name);
		rc = -EIO;
	}
	return rc;
}

void jsonl_free(jsonl_t *j)
{
	if (!j)
		return;
	while (j->arena) {
		block_t *next = j->arena->next;
		free(j->arena);
		j->arena = next;
	}
	free(j->recs);
	free(j->set);
	free(j);
}

size_t jsonl_count(const jsonl_t *j)
{
	return j->n;
}

/* ---- apply ------------------------------------------------------------------------------- */

static int org_of(reg_txn_t *txn, ctx_t *c, const rec_t *r, uint32_t *net)
{
	int rc = reg_org_net(txn, r->org, strlen(r->org), net);
	if (rc == -ENOENT)
		return fail(c, "org", "unknown org '%s' (not in this file nor in the registry)",
		            r->org);
	if (rc)
		return rc;
	if (!r->del && org_net_of(r->ip) != *net) {
		char ip[INET6_ADDRSTRLEN], pfx[INET6_ADDRSTRLEN];
		uint8_t p[16];
		org_prefix_of(*net, p);
		inet_ntop(AF_INET6, r->ip, ip, sizeof(ip));
		inet_ntop(AF_INET6, p, pfx, sizeof(pfx));
		return fail(c, r->kind == K_MACHINE ? "private_ip" : "ip",
		            "%s is outside org %s's network %s/48", ip, r->org, pfx);
	}
	return 0;
}

/* The registry's record of the same Machine or peer names r's region already. */
static bool kept_region(reg_txn_t *txn, const rec_t *r)
{
	size_t rl = strlen(r->region);
	if (r->kind == K_MACHINE) {
		reg_machine_buf_t b;
		return reg_get_machine(txn, r->id, &b) == 0 && strcmp(b.m.region, r->region) == 0;
	}
	uint32_t net;
	reg_hit_t h;
	return r->org && reg_org_net(txn, r->org, strlen(r->org), &net) == 0 &&
	       reg_find_peer(txn, net, r->id, strlen(r->id), &h) == 0 && h.region_len == rl &&
	       memcmp(h.region, r->region, rl) == 0;
}

/* r's region is a record of the file or the registry; or a deleted one that the
 * registry's record of this Machine or peer still names (they keep it: an update of them,
 * a follower's start or stop say, still applies). */
static int known_region(reg_txn_t *txn, ctx_t *c, const rec_t *r)
{
	reg_region_t reg;
	int rc = reg_get_region(txn, r->region, strlen(r->region), &reg);
	if (rc == -ENOENT && kept_region(txn, r))
		return 0;
	if (rc == -ENOENT)
		return fail(c, "region",
		            "unknown region '%s' (not in this file nor in the registry: add a "
		            "{\"kind\":\"region\",\"code\":\"%s\",...} record, e.g. from "
		            "zones/regions.jsonl)",
		            r->region, r->region);
	return rc;
}

/* Applies record r. defer: a Machine or peer whose address is still held returns
 * -EADDRINUSE (nothing written: the caller tries it again later) instead of refusing the
 * file. */
static int apply_one(reg_txn_t *txn, ctx_t *c, const rec_t *r, bool defer)
{
	uint32_t net = 0;
	int rc;
	if (!r->del && (r->kind == K_MACHINE || r->kind == K_PEER) &&
	    (rc = known_region(txn, c, r)))
		return rc;
	if (r->kind == K_MACHINE && r->del) {
		if (r->org) { /* the Machine has moved to another org since: not this one's */
			reg_machine_buf_t b;
			uint32_t onet;
			if ((rc = reg_get_machine(txn, r->id, &b)))
				return rc == -ENOENT ? 0 : rc;
			if ((rc = reg_org_net(txn, r->org, strlen(r->org), &onet)))
				return rc == -ENOENT ? 0 : rc;
			if (onet != b.m.net)
				return 0;
		}
		rc = reg_delete_machine(txn, r->id);
		return rc == -ENOENT ? 0 : rc; /* deleting what is gone is done */
	}
	if ((rc = org_of(txn, c, r, &net)))
		return rc;
	switch (r->kind) {
	case K_MACHINE: {
		reg_machine_t m = {
		        .id = r->id,
		        .app = r->app,
		        .region = r->region,
		        .group = r->group,
		        .state = r->state,
		        .net = net,
		        .meta = r->meta,
		        .nmeta = r->nmeta,
		        .skip_dns = r->skip_dns,
		        .checks = r->checks,
		        .nchecks = r->nchecks,
		};
		memcpy(m.ip, r->ip, 16);
		rc = reg_put_machine(txn, &m);
		break;
	}
	case K_PEER:
		rc = r->del ? reg_delete_peer(txn, net, r->id)
		            : reg_put_peer(txn, net, r->id, r->ip, r->region);
		break;
	default:
		rc = r->del ? reg_delete_flycast(txn, net, r->app, r->ip)
		            : reg_put_flycast(txn, net, r->app, r->ip);
		break;
	}
	if (rc == -ENOENT && r->del)
		return 0;
	if (rc == -EADDRINUSE && defer && (r->kind == K_MACHINE || r->kind == K_PEER))
		return rc;
	if (rc == -EADDRINUSE)
		return fail(c, r->kind == K_MACHINE ? "private_ip" : "ip",
		            "address already held by another started Machine or peer");
	return rc;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

/* ---- the records after orgs and regions --------------------------------------------- */

/* An address of the file: how many of its Machine and peer records name it. */
typedef struct {
	const uint8_t *ip;
	size_t n;
} ipcount_t;

/* Marks in sortable[i] the Machine puts whose address no other Machine or peer record of
 * the file names. false: out of memory (then nothing is sorted). */
static bool mark_sortable(const jsonl_t *j, bool *sortable)
{
	size_t cap = 16;
	while (cap < 2 * j->n)
		cap *= 2;
	ipcount_t *t = calloc(cap, sizeof(*t));
	if (!t)
		return false;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < j->n; i++) {
			const rec_t *r = &j->recs[i];
			if (r->del || (r->kind != K_MACHINE && r->kind != K_PEER))
				continue;
			size_t s = (size_t)hash((const char *)r->ip, 16) & (cap - 1);
			while (t[s].ip && memcmp(t[s].ip, r->ip, 16) != 0)
				s = (s + 1) & (cap - 1);
			if (pass == 0) {
				t[s].ip = r->ip;
				t[s].n++;
			} else {
				sortable[i] = r->kind == K_MACHINE && t[s].n == 1;
			}
		}
	free(t);
	return true;
}

static int by_app(const void *a, const void *b)
{
	const rec_t *x = *(const rec_t *const *)a, *y = *(const rec_t *const *)b;
	int d = strcmp(x->org, y->org);
	if (!d)
		d = strcmp(x->app, y->app);
	return d ? d : strcmp(x->id, y->id);
}

/* apply_one of record i; one whose address is still held goes to wait[*nwait] instead. */
static int apply_or_wait(reg_txn_t *txn, ctx_t *c, size_t i, size_t *wait, size_t *nwait)
{
	const rec_t *r = &c->j->recs[i];
	c->line = r->line;
	int rc = apply_one(txn, c, r, true);
	if (rc != -EADDRINUSE)
		return rc;
	wait[(*nwait)++] = i;
	return 0;
}

/*
 * Machines, peers, Flycast addresses and deletes. The Machines are written sorted by org
 * and app, so that consecutive writes land on the same index pages: a batch of random
 * start/stops in file order touches a random page of each index per record, and in a
 * large registry that is most of a batch's cost. File order matters only between records
 * that name the same address, so a Machine whose address another record names keeps its
 * place among the rest (file order). A Machine or peer whose address is still held is
 * tried again after them, in file order, while that frees addresses: the file is judged
 * by its end state (an address may move from one Machine or peer to another in either
 * order).
 */
static int apply_rest(reg_txn_t *txn, ctx_t *c)
{
	const jsonl_t *j = c->j;
	bool *sortable = calloc(j->n ? j->n : 1, sizeof(*sortable));
	const rec_t **order = malloc((j->n ? j->n : 1) * sizeof(*order));
	size_t *wait = malloc((j->n ? j->n : 1) * sizeof(*wait)), nsorted = 0, nwait = 0;
	int rc = 0;
	if (!sortable || !order || !wait) {
		rc = -ENOMEM;
		goto out;
	}
	if (!mark_sortable(j, sortable))
		memset(sortable, 0, j->n * sizeof(*sortable));
	for (size_t i = 0; i < j->n; i++)
		if (sortable[i])
			order[nsorted++] = &j->recs[i];
	qsort(order, nsorted, sizeof(*order), by_app);
	for (size_t k = 0; k < nsorted && !rc; k++)
		rc = apply_or_wait(txn, c, (size_t)(order[k] - j->recs), wait, &nwait);
	for (size_t i = 0; i < j->n && !rc; i++)
		if (j->recs[i].kind != K_ORG && j->recs[i].kind != K_REGION && !sortable[i])
			rc = apply_or_wait(txn, c, i, wait, &nwait);
	if (rc || !nwait)
		goto out;
	/* the waiting in file order, round after round while a round frees an address (a
	 * chain of moves takes a round a link at worst); then the first one still waiting
	 * refuses the file (a cycle: two Machines that swap addresses) */
	qsort(wait, nwait, sizeof(*wait), cmp_size);
	while (nwait && !rc) {
		size_t left = 0;
		for (size_t k = 0; k < nwait && !rc; k++) /* writes wait[left], left <= k */
			rc = apply_or_wait(txn, c, wait[k], wait, &left);
		if (left == nwait)
			break;
		nwait = left;
	}
	for (size_t k = 0; k < nwait && !rc; k++) {
		c->line = j->recs[wait[k]].line;
		rc = apply_one(txn, c, &j->recs[wait[k]], false);
	}
out:
	free(sortable);
	free(order);
	free(wait);
	return rc;
}

int jsonl_apply(reg_txn_t *txn, const jsonl_t *j, bool replace, char *err)
{
	ctx_t c = {.j = (jsonl_t *)j, .err = err};
	int rc;
	err[0] = '\0';
	if (replace && (rc = reg_clear(txn)))
		return rc;
	/* orgs and regions first: the other records name them */
	for (size_t i = 0; i < j->n; i++) {
		const rec_t *r = &j->recs[i];
		if (r->kind != K_REGION)
			continue;
		c.line = r->line;
		rc = r->del ? reg_delete_region(txn, r->id)
		            : reg_put_region(txn, r->id, r->app, r->lat, r->lon);
		if (rc && !(rc == -ENOENT && r->del))
			return rc;
	}
	for (size_t i = 0; i < j->n; i++) {
		const rec_t *r = &j->recs[i];
		if (r->kind != K_ORG || r->del)
			continue;
		c.line = r->line;
		rc = reg_put_org(txn, r->org, r->net);
		if (rc == -EEXIST)
			return fail(&c, "network",
			            "org '%s' or its network is already in the registry with "
			            "another network or slug",
			            r->org);
		if (rc)
			return rc;
	}
	if ((rc = apply_rest(txn, &c)))
		return rc;
	/* org deletes last: the deletes of the org's records in the same file come first */
	for (size_t i = 0; i < j->n; i++) {
		const rec_t *r = &j->recs[i];
		if (r->kind != K_ORG || !r->del)
			continue;
		c.line = r->line;
		rc = reg_delete_org(txn, r->org);
		if (rc == -ENOTEMPTY)
			return fail(
			        &c, "slug",
			        "org '%s' still has Machines, peers or Flycast addresses; delete "
			        "them first (or in the same file)",
			        r->org);
		if (rc && rc != -ENOENT) /* deleting what is gone is done */
			return rc;
	}
	return 0;
}

typedef struct {
	const jsonl_t *j;
	bool replace;
	char *err;
} import_t;

static int import_fn(reg_txn_t *txn, void *arg)
{
	import_t *im = arg;
	return jsonl_apply(txn, im->j, im->replace, im->err);
}

int jsonl_import_parsed(reg_t *reg, const jsonl_t *j, bool replace, char *err)
{
	import_t im = {j, replace, err};
	int rc = reg_write(reg, import_fn, &im);
	if (rc && !err[0])
		snprintf(err, JSONL_ERR_MAX, "%s: registry write failed: %s", j->name,
		         reg_strerror(rc));
	return rc;
}

int jsonl_import(reg_t *reg, FILE *f, const char *name, bool replace, char *err)
{
	jsonl_t *j;
	int rc = jsonl_parse(f, name, &j, err);
	if (rc)
		return rc;
	rc = jsonl_import_parsed(reg, j, replace, err);
	jsonl_free(j);
	return rc;
}

/* ---- export ------------------------------------------------------------------------------- */

typedef struct {
	reg_txn_t *txn;
	FILE *out;
	int rc;
} export_t;

static int emit(export_t *e, json_t *o)
{
	if (!o)
		return e->rc = -ENOMEM;
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
	json_decref(o);
	if (!s)
		return e->rc = -ENOMEM;
	if (fprintf(e->out, "%s\n", s) < 0)
		e->rc = errno ? -errno : -EIO; /* a full disk says so */
	free(s);
	return e->rc;
}

static void ipstr(const uint8_t ip[16], char *buf)
{
	inet_ntop(AF_INET6, ip, buf, INET6_ADDRSTRLEN);
}

static int export_org(const char *slug, size_t len, uint32_t net, void *arg)
{
	uint8_t p[16];
	char ip[INET6_ADDRSTRLEN], netw[INET6_ADDRSTRLEN + 4];
	org_prefix_of(net, p);
	ipstr(p, ip);
	snprintf(netw, sizeof(netw), "%s/48", ip);
	return emit(arg,
	            json_pack("{s:s,s:s%,s:s}", "kind", "org", "slug", slug, len, "network", netw));
}

static int export_machine(const reg_machine_t *m, void *arg)
{
	export_t *e = arg;
	char org[REG_LABEL_MAX + 1], ip[INET6_ADDRSTRLEN];
	if ((e->rc = reg_org_slug(e->txn, m->net, org, sizeof(org))))
		return e->rc;
	ipstr(m->ip, ip);
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "kind", "machine", "id", m->id,
	                      "org", org, "app", m->app, "region", m->region, "private_ip", ip,
	                      "state", m->state, "process_group", m->group);
	if (o && m->nmeta) {
		json_t *md = json_object();
		for (size_t i = 0; md && i < m->nmeta; i++)
			json_object_set_new(md, m->meta[i].key, json_string(m->meta[i].value));
		json_object_set_new(o, "metadata", md);
	}
	if (o && m->skip_dns)
		json_object_set_new(o, "dns", json_pack("{s:b}", "skip_registration", 1));
	if (o && m->nchecks) {
		static const char *const statuses[] = {"passing", "warning", "critical"};
		json_t *cs = json_array();
		for (size_t i = 0; cs && i < m->nchecks; i++)
			json_array_append_new(cs, json_pack("{s:s,s:s}", "name", m->checks[i].name,
			                                    "status",
			                                    statuses[m->checks[i].status % 3]));
		json_object_set_new(o, "checks", cs);
	}
	return emit(e, o);
}

static int export_peer(const reg_hit_t *h, void *arg)
{
	export_t *e = arg;
	char org[REG_LABEL_MAX + 1], ip[INET6_ADDRSTRLEN];
	if ((e->rc = reg_org_slug(e->txn, h->net, org, sizeof(org))))
		return e->rc;
	ipstr(h->ip, ip);
	return emit(e, json_pack("{s:s,s:s,s:s%,s:s,s:s%}", "kind", "peer", "org", org, "name",
	                         h->id, (size_t)h->id_len, "ip", ip, "region", h->region,
	                         (size_t)h->region_len));
}

static int export_flycast(const reg_hit_t *h, void *arg)
{
	export_t *e = arg;
	char org[REG_LABEL_MAX + 1], ip[INET6_ADDRSTRLEN];
	if ((e->rc = reg_org_slug(e->txn, h->net, org, sizeof(org))))
		return e->rc;
	ipstr(h->ip, ip);
	return emit(e, json_pack("{s:s,s:s,s:s%,s:s}", "kind", "flycast", "org", org, "app", h->app,
	                         (size_t)h->app_len, "ip", ip));
}

static int export_region(const reg_region_t *r, void *arg)
{
	return emit(arg, json_pack("{s:s,s:s%,s:s%,s:f,s:f}", "kind", "region", "code", r->code,
	                           (size_t)r->code_len, "name", r->name, (size_t)r->name_len, "lat",
	                           r->lat, "lon", r->lon));
}

int jsonl_export(reg_txn_t *txn, FILE *out)
{
	export_t e = {txn, out, 0};
	int rc;
	if ((rc = reg_walk_regions(txn, export_region, &e)) < 0 || e.rc ||
	    (rc = reg_walk_orgs(txn, export_org, &e)) < 0 || e.rc ||
	    (rc = reg_walk_machines(txn, export_machine, &e)) < 0 || e.rc ||
	    (rc = reg_walk_all_peers(txn, export_peer, &e)) < 0 || e.rc ||
	    (rc = reg_walk_all_flycast(txn, export_flycast, &e)) < 0 || e.rc)
		return e.rc ? e.rc : rc;
	if (fflush(out))
		return errno ? -errno : -EIO; /* a full disk says so */
	return ferror(out) ? -EIO : 0;
}

/* ---- regions every record names ------------------------------------------------------------ */

typedef struct {
	reg_txn_t *txn;
	char *err;
	int rc;
} regcheck_t;

static int check_region_of(regcheck_t *rc, const char *what, const char *name, size_t nl,
                           const char *region, size_t rl)
{
	reg_region_t r;
	int e = reg_get_region(rc->txn, region, rl, &r);
	if (e == -ENOENT)
		snprintf(rc->err, JSONL_ERR_MAX,
		         "%s %.*s names region '%.*s', which the registry does not hold: add its "
		         "region record",
		         what, (int)nl, name, (int)rl, region);
	return rc->rc = e;
}

static int regcheck_machine(const reg_machine_t *m, void *arg)
{
	return check_region_of(arg, "machine", m->id, strlen(m->id), m->region, strlen(m->region));
}

static int regcheck_peer(const reg_hit_t *h, void *arg)
{
	return check_region_of(arg, "peer", h->id, h->id_len, h->region, h->region_len);
}

int jsonl_check_regions(reg_txn_t *txn, char *err)
{
	regcheck_t c = {txn, err, 0};
	int rc;
	err[0] = '\0';
	if ((rc = reg_walk_machines(txn, regcheck_machine, &c)) < 0 || c.rc ||
	    (rc = reg_walk_all_peers(txn, regcheck_peer, &c)) < 0 || c.rc)
		return c.rc == -ENOENT ? -EINVAL : c.rc ? c.rc : rc;
	return 0;
}
