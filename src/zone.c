/*
 * zone.c — `internalctl zone`: the org's names as a master file, so that Knot DNS and
 * NSD can serve the same data in bench/. Records are built and printed by ldns; the
 * TXT texts come from ans_txt_items, the same code that answers them.
 */
#include "zone.h"

#include <errno.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"

typedef struct {
	FILE *out;
	uint32_t net, ttl;
	reg_txn_t *txn;
	int rc;
	char *buf; /* a TXT text being built */
	size_t len, cap;
} zw_t;

static int print_rr(zw_t *z, const char *owner, ldns_rr_type type, ldns_rdf **rdfs, size_t n)
{
	ldns_rr *rr = ldns_rr_new();
	ldns_rdf *dname = NULL;
	if (!rr || ldns_str2rdf_dname(&dname, owner) != LDNS_STATUS_OK) {
		ldns_rr_free(rr);
		for (size_t i = 0; i < n; i++)
			ldns_rdf_deep_free(rdfs[i]);
		return z->rc = -EINVAL;
	}
	ldns_rr_set_owner(rr, dname);
	ldns_rr_set_type(rr, type);
	ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
	ldns_rr_set_ttl(rr, z->ttl);
	for (size_t i = 0; i < n; i++)
		ldns_rr_push_rdf(rr, rdfs[i]);
	ldns_rr_print(z->out, rr);
	ldns_rr_free(rr);
	return 0;
}

static int aaaa(zw_t *z, const char *owner, const uint8_t ip[16])
{
	ldns_rdf *rd = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_AAAA, 16, ip);
	return print_rr(z, owner, LDNS_RR_TYPE_AAAA, &rd, 1);
}

/* One TXT record of 255-byte character-strings. */
static int txt(zw_t *z, const char *owner, const char *text, size_t len)
{
	ldns_rdf *rdfs[258];
	size_t n = 0;
	for (size_t off = 0; off < len || n == 0; off += 255) {
		size_t l = len - off < 255 ? len - off : 255;
		uint8_t cs[256];
		cs[0] = (uint8_t)l;
		memcpy(cs + 1, text + off, l);
		if (n == 257)
			break;
		rdfs[n++] = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_STR, l + 1, cs);
	}
	return print_rr(z, owner, LDNS_RR_TYPE_TXT, rdfs, n);
}

/* A TXT RDATA holds at most 65535 bytes: texts are cut at an item boundary before
 * that, as internald cuts them over TCP. */
#define TEXT_MAX 64000

static int append(const char *item, size_t len, void *arg)
{
	zw_t *z = arg;
	if (z->len + len > TEXT_MAX)
		return 1;
	if (z->len + len > z->cap) {
		size_t cap = 2 * (z->len + len) + 256;
		char *b = realloc(z->buf, cap);
		if (!b)
			return z->rc = -ENOMEM;
		z->buf = b, z->cap = cap;
	}
	memcpy(z->buf + z->len, item, len);
	z->len += len;
	return 0;
}

/* An empty list is one TXT record of one empty string, as internald answers it. */
static int txt_form(zw_t *z, const char *owner, names_form_t form, const char *app, size_t al)
{
	z->len = 0;
	int n = ans_txt_items(z->txn, z->net, form, app, al, append, z);
	if (n < 0)
		return z->rc = n;
	return !z->rc ? txt(z, owner, z->buf, z->len) : z->rc;
}

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

static int machine(const reg_hit_t *h, void *arg)
{
	zw_t *z = arg;
	static reg_machine_buf_t b; /* 17 KB: internalctl is one thread */
	char id[REG_LABEL_MAX + 1], owner[4 * (REG_LABEL_MAX + 1) + 32];
	snprintf(id, sizeof(id), "%.*s", h->id_len, h->id);
	if ((z->rc = reg_get_machine(z->txn, id, &b)))
		return z->rc;
	const reg_machine_t *m = &b.m;
	snprintf(owner, sizeof(owner), "%s.internal.", m->app);
	aaaa(z, owner, m->ip);
	snprintf(owner, sizeof(owner), "global.%s.internal.", m->app);
	aaaa(z, owner, m->ip);
	snprintf(owner, sizeof(owner), "%s.%s.internal.", m->region, m->app);
	aaaa(z, owner, m->ip);
	snprintf(owner, sizeof(owner), "%s.process.%s.internal.", m->group, m->app);
	aaaa(z, owner, m->ip);
	snprintf(owner, sizeof(owner), "%s.vm.%s.internal.", m->id, m->app);
	aaaa(z, owner, m->ip);
	for (size_t i = 0; i < m->nmeta; i++) {
		const char *k = m->meta[i].key, *v = m->meta[i].value;
		if (!names_meta_label(k, strlen(k)) || !names_meta_label(v, strlen(v)))
			continue; /* stored, but no name */
		snprintf(owner, sizeof(owner), "%s.%s.kv._metadata.%s.internal.", v, k, m->app);
		lower(owner);
		aaaa(z, owner, m->ip);
		snprintf(owner, sizeof(owner), "%s.kv._metadata.%s.internal.", k, m->app);
		lower(owner);
		aaaa(z, owner, m->ip);
	}
	return z->rc;
}

/* Walks share the transaction's cursors, so the app names are collected first. */
typedef struct {
	char (*names)[REG_LABEL_MAX + 1];
	size_t n, cap;
} names_list_t;

static int collect_app(const char *name, size_t len, uint32_t count, void *arg)
{
	(void)count;
	names_list_t *l = arg;
	if (len > REG_LABEL_MAX)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		void *p = realloc(l->names, cap * sizeof(*l->names));
		if (!p)
			return 1;
		l->names = p, l->cap = cap;
	}
	memcpy(l->names[l->n], name, len);
	l->names[l->n++][len] = '\0';
	return 0;
}

static int app(zw_t *z, const char *name, size_t len)
{
	char owner[REG_LABEL_MAX + 32];
	if (reg_walk_app(z->txn, z->net, name, len, machine, z) < 0 && !z->rc)
		z->rc = -EIO;
	snprintf(owner, sizeof(owner), "vms.%.*s.internal.", (int)len, name);
	txt_form(z, owner, NAME_VMS, name, len);
	snprintf(owner, sizeof(owner), "regions.%.*s.internal.", (int)len, name);
	txt_form(z, owner, NAME_REGIONS, name, len);
	return z->rc;
}

/* Every app with a Machine in any state has all.vms and all.regions. */
static int all_app(zw_t *z, const char *name, size_t len)
{
	char owner[REG_LABEL_MAX + 32];
	snprintf(owner, sizeof(owner), "all.vms.%.*s.internal.", (int)len, name);
	txt_form(z, owner, NAME_ALL_VMS, name, len);
	snprintf(owner, sizeof(owner), "all.regions.%.*s.internal.", (int)len, name);
	txt_form(z, owner, NAME_ALL_REGIONS, name, len);
	return z->rc;
}

/* The apps of every state, from the all-states walk of the org (by app, then id). */
static int collect_any_app(const reg_hit_t *h, void *arg)
{
	names_list_t *l = arg;
	if (l->n && strlen(l->names[l->n - 1]) == h->app_len &&
	    memcmp(l->names[l->n - 1], h->app, h->app_len) == 0)
		return 0;
	return collect_app(h->app, h->app_len, 0, arg);
}

static int peer(const reg_hit_t *h, void *arg)
{
	zw_t *z = arg;
	char owner[REG_LABEL_MAX + 32];
	if (names_peer_hidden(h->id, h->id_len))
		return 0;
	snprintf(owner, sizeof(owner), "%.*s._peer.internal.", h->id_len, h->id);
	return aaaa(z, owner, h->ip);
}

int zone_write(reg_txn_t *txn, uint32_t net, uint32_t ttl, FILE *out)
{
	zw_t z = {.out = out, .net = net, .ttl = ttl, .txn = txn};
	char soa[160];
	ldns_rr *rr = NULL;
	snprintf(soa, sizeof(soa),
	         "internal. %u IN SOA _ns.internal. hostmaster.internal. %u 3600 600 86400 %u", ttl,
	         reg_org_serial(txn, net), ttl);
	fprintf(out, "$ORIGIN internal.\n$TTL %u\n", ttl);
	if (ldns_rr_new_frm_str(&rr, soa, 0, NULL, NULL) != LDNS_STATUS_OK)
		return -EINVAL;
	ldns_rr_print(out, rr);
	ldns_rr_free(rr);
	ldns_rdf *ns = NULL;
	ldns_str2rdf_dname(&ns, "_ns.internal.");
	print_rr(&z, "internal.", LDNS_RR_TYPE_NS, &ns, 1);
	/* internald answers _ns.internal. with the address a query arrived on; a zone file
	 * cannot say that, and ::1 stands for "this server" */
	static const uint8_t loopback[16] = {[15] = 1};
	aaaa(&z, "_ns.internal.", loopback);
	names_list_t apps = {0};
	int rc = reg_walk_apps(txn, net, collect_app, &apps);
	if (rc >= 0 && (size_t)rc != apps.n)
		rc = -ENOMEM;
	for (size_t i = 0; rc >= 0 && !z.rc && i < apps.n; i++)
		app(&z, apps.names[i], strlen(apps.names[i]));
	apps.n = 0;
	if (rc >= 0 && !z.rc && (rc = reg_walk_all_org(txn, net, collect_any_app, &apps)) >= 0)
		for (size_t i = 0; !z.rc && i < apps.n; i++)
			all_app(&z, apps.names[i], strlen(apps.names[i]));
	free(apps.names);
	if (rc >= 0 && !z.rc)
		rc = reg_walk_peers(txn, net, peer, &z);
	if (rc >= 0 && !z.rc) {
		txt_form(&z, "_apps.internal.", NAME_APPS, NULL, 0);
		txt_form(&z, "_peer.internal.", NAME_PEERS, NULL, 0);
		txt_form(&z, "_instances.internal.", NAME_INSTANCES, NULL, 0);
		txt_form(&z, "all._instances.internal.", NAME_ALL_INSTANCES, NULL, 0);
	}
	free(z.buf);
	if (rc < 0)
		return rc;
	if (z.rc)
		return z.rc;
	/* ldns prints without telling of a failed write: the stream keeps the error */
	if (fflush(out))
		return errno ? -errno : -EIO; /* a full disk says so */
	return ferror(out) ? -EIO : 0;
}
