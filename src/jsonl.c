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
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "names.h"
#include "org.h"

enum kind { K_ORG, K_MACHINE, K_PEER, K_FLYCAST, K_REGION, K_N };
static const char *const kind_names[] = {"org", "machine", "peer", "flycast", "region"};
#define FIELDS_MAX 12
/* Fields each kind accepts; the first ones listed are required for an upsert. */
static const char *const kind_fields[][FIELDS_MAX] = {
        [K_ORG] = {"kind", "slug", "network", "op", NULL},
        [K_MACHINE] = {"kind", "id", "org", "app", "region", "private_ip", "state", "process_group",
                       "metadata", "dns", "checks", "op"},
        [K_PEER] = {"kind", "org", "name", "ip", "region", "op", NULL},
        [K_FLYCAST] = {"kind", "org", "app", "ip", "op", NULL},
        [K_REGION] = {"kind", "code", "name", "lat", "lon", "op", NULL},
};

typedef struct {
	uint8_t kind;
	bool del;
	bool skip_dns;
	uint8_t nmeta, nchecks;
	unsigned line;
	const char *org; /* the slug of an org record; the owning org otherwise */
	const char *id;  /* Machine id, or the peer's name */
	const char *app, *region, *group, *state;
	uint8_t ip[16];
	uint32_t net; /* org records */
	reg_meta_t *meta;
	reg_check_t *checks;
	double lat, lon; /* region records (id is the code, app the city name) */
} rec_t;

typedef struct block {
	struct block *next;
	size_t used, cap;
	char data[];
} block_t;

struct jsonl {
	char name[256];
	rec_t *recs;
	size_t n, cap;
	block_t *arena;
	/* duplicate detection: open addressing over "kind\0key" strings in the arena */
	const char **set;
	size_t set_cap, set_n;
};

/* ---- arena --------------------------------------------------------------------------- */

static void *arena_alloc(jsonl_t *j, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	if (!j->arena || j->arena->used + n > j->arena->cap) {
		size_t cap = n > (1 << 20) ? n : (1 << 20);
		block_t *b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->next = j->arena, b->used = 0, b->cap = cap;
		j->arena = b;
	}
	void *p = j->arena->data + j->arena->used;
	j->arena->used += n;
	return p;
}

static char *arena_strdup(jsonl_t *j, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = arena_alloc(j, n);
	if (p)
		memcpy(p, s, n);
	return p;
}

/* ---- duplicate set --------------------------------------------------------------------- */

static uint64_t hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
	return h;
}

/* Keys are "<kind-char><key>" strings. Returns 1 if already present, 0 if added, <0. */
static int set_add(jsonl_t *j, const char *key)
{
	if (2 * (j->set_n + 1) > j->set_cap) {
		size_t cap = j->set_cap ? 2 * j->set_cap : 1024;
		const char **set = calloc(cap, sizeof(*set));
		if (!set)
			return -ENOMEM;
		for (size_t i = 0; i < j->set_cap; i++) {
			if (!j->set[i])
				continue;
			size_t h = hash(j->set[i], strlen(j->set[i])) & (cap - 1);
			while (set[h])
				h = (h + 1) & (cap - 1);
			set[h] = j->set[i];
		}
		free(j->set);
		j->set = set, j->set_cap = cap;
	}
	size_t h = hash(key, strlen(key)) & (j->set_cap - 1);
	while (j->set[h]) {
		if (strcmp(j->set[h], key) == 0)
			return 1;
		h = (h + 1) & (j->set_cap - 1);
	}
	const char *copy = arena_strdup(j, key);
	if (!copy)
		return -ENOMEM;
	j->set[h] = copy;
	j->set_n++;
	return 0;
}

/* ---- parsing ------------------------------------------------------------------------------ */

typedef struct {
	jsonl_t *j;
	unsigned line;
	char *err;
} ctx_t;

__attribute__((format(printf, 3, 4))) static int fail(ctx_t *c, const char *field, const char *fmt,
                                                      ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (field)
		snprintf(c->err, JSONL_ERR_MAX, "%.150s:%u: field '%.100s': %s", c->j->name,
		         c->line, field, what);
	else
		snprintf(c->err, JSONL_ERR_MAX, "%.150s:%u: %s", c->j->name, c->line, what);
	return -EINVAL;
}

/* A lower-cased copy of s (len bytes, no NUL inside) in the arena. */
static int copy_lower(ctx_t *c, const char *field, const char *s, size_t len, const char **out)
{
	if (strlen(s) != len)
		return fail(c, field, "contains a NUL byte");
	char *copy = arena_strdup(c->j, s);
	if (!copy)
		return -ENOMEM;
	for (char *p = copy; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	*out = copy;
	return 0;
}

/* A string field, lower-cased; *out stays NULL when absent. */
static int get_string(ctx_t *c, json_t *obj, const char *field, bool required, const char **out)
{
	json_t *v = json_object_get(obj, field);
	*out = NULL;
	if (!v)
		return required ? fail(c, field, "missing") : 0;
	if (!json_is_string(v))
		return fail(c, field, "must be a string");
	return copy_lower(c, field, json_string_value(v), json_string_length(v), out);
}

static int get_label(ctx_t *c, json_t *obj, const char *field, bool required, const char **out)
{
	int rc = get_string(c, obj, field, required, out);
	if (rc || !*out)
		return rc;
	if (!names_label_valid(*out, strlen(*out)))
		return fail(c, field,
		            "'%s' is not a DNS label (1-63 of a-z, 0-9, '-'; no '-' at "
		            "either end)",
		            *out);
	return 0;
}

static int get_ip(ctx_t *c, json_t *obj, const char *field, uint8_t ip[16])
{
	const char *s;
	int rc = get_string(c, obj, field, true, &s);
	if (rc)
		return rc;
	if (org_parse_addr(s, ip))
		return fail(c, field, "'%s' is not an IPv6 address", s);
	if (!org_is_6pn(ip))
		return fail(c, field, "'%s' is outside the 6PN range fdaa::/16", s);
	return 0;
}

static int check_fields(ctx_t *c, json_t *obj, int kind)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		bool known = false;
		for (size_t i = 0; i < FIELDS_MAX && kind_fields[kind][i] && !known; i++)
			known = strcmp(key, kind_fields[kind][i]) == 0;
		if (!known)
			return fail(c, key, "unknown field for kind '%s'", kind_names[kind]);
	}
	return 0;
}

/* Printable text: no control characters (UTF-8 is checked by jansson). */
static bool printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool same_key(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* Metadata as the Machines API has it: stored as given; names only for label pairs. */
static int get_metadata(ctx_t *c, json_t *obj, rec_t *r)
{
	json_t *md = json_object_get(obj, "metadata"), *v;
	const char *key;
	if (!md)
		return 0;
	if (!json_is_object(md))
		return fail(c, "metadata", "must be an object of string values");
	size_t n = json_object_size(md);
	if (n > REG_META_MAX)
		return fail(c, "metadata", "%zu pairs; at most %d", n, REG_META_MAX);
	r->meta = arena_alloc(c->j, n * sizeof(*r->meta) + 1);
	if (!r->meta)
		return -ENOMEM;
	json_object_foreach(md, key, v)
	{
		char field[96];
		snprintf(field, sizeof(field), "metadata.%.80s", key);
		if (!json_is_string(v))
			return fail(c, field, "must be a string");
		size_t kl = strlen(key), vl = json_string_length(v);
		const char *val = json_string_value(v);
		if (kl == 0 || kl > REG_LABEL_MAX || !printable(key, kl))
			return fail(c, field, "a key is 1-%d printable characters", REG_LABEL_MAX);
		if (vl > REG_META_VALUE_MAX || strlen(val) != vl || !printable(val, vl))
			return fail(c, field, "a value is at most %d printable characters",
			            REG_META_VALUE_MAX);
		for (size_t i = 0; i < r->nmeta; i++)
			if (same_key(r->meta[i].key, key))
				return fail(c, field,
				            "the key '%s' is given twice (keys ignore case)",
				            r->meta[i].key);
		const char *k2 = arena_strdup(c->j, key), *v2 = arena_strdup(c->j, val);
		if (!k2 || !v2)
			return -ENOMEM;
		r->meta[r->nmeta++] = (reg_meta_t){k2, v2};
	}
	return 0;
}

/* "dns": {"skip_registration": true|false} */
static int get_dns(ctx_t *c, json_t *obj, rec_t *r)
{
	json_t *dns = json_object_get(obj, "dns"), *v;
	const char *key;
	if (!dns)
		return 0;
	if (!json_is_object(dns))
		return fail(c, "dns", "must be an object such as {\"skip_registration\":true}");
	json_object_foreach(dns, key, v)
	{
		if (strcmp(key, "skip_registration") != 0)
			return fail(c, "dns", "unknown field '%s' (only skip_registration)", key);
		if (!json_is_boolean(v))
			return fail(c, "dns.skip_registration", "must be true or false");
		r->skip_dns = json_is_true(v);
	}
	return 0;
}

/*
 * "checks" as the Machines API reports them: [{"name":"http","status":"passing"}, ...],
 * status passing, warning or critical. Name and status are kept; the API's other fields
 * (output, updated_at, ...) are ignored and not exported.
 */
static int get_checks(ctx_t *c, json_t *obj, rec_t *r)
{
	static const char *const statuses[] = {[REG_CHECK_PASSING] = "passing",
	                                       [REG_CHECK_WARNING] = "warning",
	                                       [REG_CHECK_CRITICAL] = "critical"};
	json_t *a = json_object_get(obj, "checks"), *v;
	size_t i;
	if (!a)
		return 0;
	if (!json_is_array(a))
		return fail(
		        c, "checks",
		        "must be an array such as [{\"name\":\"http\",\"status\":\"passing\"}]");
	if (json_array_size(a) > REG_CHECKS_MAX)
		return fail(c, "checks", "%zu checks; at most %d", json_array_size(a),
		            REG_CHECKS_MAX);
	r->checks = arena_alloc(c->j, json_array_size(a) * sizeof(*r->checks) + 1);
	if (!r->checks)
		return -ENOMEM;
	json_array_foreach(a, i, v)
	{
		char field[48];
		json_t *name = json_object_get(v, "name"), *st = json_object_get(v, "status");
		snprintf(field, sizeof(field), "checks[%zu]", i);
		if (!json_is_object(v))
			return fail(c, field, "must be an object with a name and a status");
		snprintf(field, sizeof(field), "checks[%zu].name", i);
		if (!name)
			return fail(c, field, "missing");
		const char *n = json_is_string(name) ? json_string_value(name) : NULL;
		size_t nl = n ? json_string_length(name) : 0;
		if (!n || nl == 0 || nl > REG_LABEL_MAX || strlen(n) != nl || !printable(n, nl))
			return fail(c, field, "a check's name is 1-%d printable characters",
			            REG_LABEL_MAX);
		for (size_t k = 0; k < r->nchecks; k++)
			if (strcmp(r->checks[k].name, n) == 0)
				return fail(c, field, "the check '%s' is given twice", n);
		snprintf(field, sizeof(field), "checks[%zu].status", i);
		if (!st)
			return fail(c, field, "missing");
		int status = -1;
		for (int k = 0; json_is_string(st) && k < 3; k++)
			if (strcmp(json_string_value(st), statuses[k]) == 0)
				status = k;
		if (status < 0)
			return fail(c, field, "must be \"passing\", \"warning\" or \"critical\"");
		const char *n2 = arena_strdup(c->j, n);
		if (!n2)
			return -ENOMEM;
		r->checks[r->nchecks++] = (reg_check_t){n2, (uint8_t)status};
	}
	return 0;
}

/* An app must not be a word of the names either (healthy.<app>). */
static int app_not_reserved(ctx_t *c, const char *app)
{
	if (app && names_app_reserved(app, strlen(app)))
		return fail(c, "app", "'%s' is a reserved word of the names (healthy.<app>)", app);
	return 0;
}

/* A region code or process group must not be a word of the names. */
static int not_reserved(ctx_t *c, const char *field, const char *s)
{
	if (s && names_reserved(s, strlen(s)))
		return fail(c, field,
		            "'%s' is a reserved word of the names (global, vms, regions, "
		            "process, vm, nearest, of, kv, all, healthy, ...)",
		            s);
	return 0;
}

static int parse_region(ctx_t *c, json_t *o, rec_t *r)
{
	int rc;
	if ((rc = get_label(c, o, "code", true, &r->id)) || (rc = not_reserved(c, "code", r->id)))
		return rc;
	if (r->del)
		return 0;
	json_t *name = json_object_get(o, "name");
	if (!name)
		return fail(c, "name", "missing");
	if (!json_is_string(name) || json_string_length(name) > REG_REGION_NAME_MAX ||
	    !printable(json_string_value(name), json_string_length(name)))
		return fail(c, "name", "must be a string of at most %d printable characters",
		            REG_REGION_NAME_MAX);
	if (!(r->app = arena_strdup(c->j, json_string_value(name))))
		return -ENOMEM;
	static const char *const coord[] = {"lat", "lon"};
	for (int i = 0; i < 2; i++) {
		json_t *v = json_object_get(o, coord[i]);
		double d = v ? json_number_value(v) : 0, lim = i ? 180 : 90;
		if (!v)
			return fail(c, coord[i], "missing");
		if (!json_is_number(v) || d < -lim || d > lim)
			return fail(c, coord[i], "must be a number of degrees from %g to %g", -lim,
			            lim);
		*(i ? &r->lon : &r->lat) = d;
	}
	return 0;
}

static int parse_machine(ctx_t *c, json_t *o, rec_t *r)
{
	int rc;
	const char *id;
	if ((rc = get_string(c, o, "id", true, &id)))
		return rc;
	if (!names_machine_id(id, strlen(id)) && !names_label_valid(id, strlen(id)))
		return fail(c, "id", "'%s' is neither 14 hex digits nor a DNS label", id);
	r->id = id;
	if (r->del) /* with an org, only that org's Machine of the id goes */
		return get_label(c, o, "org", false, &r->org);
	if ((rc = get_label(c, o, "org", true, &r->org)) ||
	    (rc = get_label(c, o, "app", true, &r->app)) ||
	    (rc = get_label(c, o, "region", true, &r->region)) ||
	    (rc = get_label(c, o, "process_group", false, &r->group)) ||
	    (rc = get_string(c, o, "state", false, &r->state)) ||
	    (rc = get_ip(c, o, "private_ip", r->ip)) || (rc = get_metadata(c, o, r)) ||
	    (rc = get_dns(c, o, r)) || (rc = get_checks(c, o, r)) ||
	    (rc = app_not_reserved(c, r->app)) || (rc = not_reserved(c, "process_group", r->group)))
		return rc;
	if (!r->group)
		r->group = "app";
	if (!r->state)
		r->state = "started";
	size_t sl = strlen(r->state);
	if (sl == 0 || sl > REG_STATE_MAX || strspn(r->state, "abcdefghijklmnopqrstuvwxyz_") != sl)
		return fail(c, "state", "'%s' is not a Machine state (a-z and '_', at most %d)",
		            r->state, REG_STATE_MAX);
	return 0;
}

static int parse_record(ctx_t *c, json_t *o, rec_t *r)
{
	json_t *k = json_object_get(o, "kind");
	if (!k)
		return fail(c, "kind", "missing");
	if (!json_is_string(k))
		return fail(c, "kind", "must be a string");
	const char *ks = json_string_value(k);
	int kind = -1;
	for (int i = 0; i < K_N; i++)
		if (strcmp(ks, kind_names[i]) == 0)
			kind = i;
	if (kind < 0)
		return fail(c, "kind", "unknown kind '%s' (org, machine, peer, flycast, region)",
		            ks);
	r->kind = (uint8_t)kind;
	r->line = c->line;
	int rc = check_fields(c, o, kind);
	if (rc)
		return rc;
	json_t *op = json_object_get(o, "op");
	if (op) {
		if (!json_is_string(op) || strcmp(json_string_value(op), "delete") != 0)
			return fail(c, "op", "the only op is \"delete\"");
		r->del = true;
	}
	char key[3 * 64 + 8];
	switch (kind) {
	case K_ORG: {
		const char *net;
		if ((rc = get_label(c, o, "slug", true, &r->org)) ||
		    (rc = get_string(c, o, "network", !r->del, &net)))
			return rc;
		if (net && org_parse_network(net, &r->net))
			return fail(c, "network", "'%s' is not an fdaa:X:Y::/48 network", net);
		snprintf(key, sizeof(key), "o%s", r->org);
		break;
	}
	case K_MACHINE:
		if ((rc = parse_machine(c, o, r)))
			return rc;
		snprintf(key, sizeof(key), "m%s", r->id);
		break;
	case K_REGION:
		if ((rc = parse_region(c, o, r)))
			return rc;
		snprintf(key, sizeof(key), "r%s", r->id);
		break;
	case K_PEER:
		if ((rc = get_label(c, o, "org", true, &r->org)) ||
		    (rc = get_label(c, o, "name", true, &r->id)))
			return rc;
		if (!r->del && ((rc = get_ip(c, o, "ip", r->ip)) ||
		                (rc = get_label(c, o, "region", true, &r->region))))
			return rc;
		snprintf(key, sizeof(key), "p%s/%s", r->org, r->id);
		break;
	default: {
		char ip[INET6_ADDRSTRLEN];
		if ((rc = get_label(c, o, "org", true, &r->org)) ||
		    (rc = get_label(c, o, "app", true, &r->app)) ||
		    (rc = get_ip(c, o, "ip", r->ip)))
			return rc;
		inet_ntop(AF_INET6, r->ip, ip, sizeof(ip));
		snprintf(key, sizeof(key), "f%s/%s/%s", r->org, r->app, ip);
		break;
	}
	}
	rc = set_add(c->j, key);
	if (rc == 1)
		return fail(c,
		            kind == K_ORG       ? "slug"
		            : kind == K_MACHINE ? "id"
		            : kind == K_REGION  ? "code"
		                                : NULL,
		            "duplicate %s '%s' in this file", kind_names[kind], key + 1);
	return rc;
}

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
