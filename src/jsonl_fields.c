/*
 * jsonl_fields.c — the fields of each record kind: which a kind accepts, and each
 * field's validation and parsing into a rec_t, in an arena, with duplicates in one file
 * refused. Every refusal names file, line and field. Nothing here touches the registry.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jsonl_impl.h"
#include "names.h"
#include "org.h"

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

int parse_record(ctx_t *c, json_t *o, rec_t *r)
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
