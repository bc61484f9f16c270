/*
 * answer.c — the query's answer: internald(7) ORGANISATIONS, NAMES and ANSWERS as code.
 *
 * A small state machine over the parsed query: refuse what is not ours to answer, find
 * the name form, ask the registry, write records straight into the response buffer.
 * It must never name another org's records, never allocate, and never block.
 */
#include "answer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define REGIONS_SCRATCH 256

typedef struct {
	ans_ctx_t *ctx;
	wire_resp_t *r;
	const wire_query_t *q;
	const names_t *n;
	const ans_client_t *cl;
	uint32_t net;
	uint16_t owner, apex, internal_off;
} req_t;

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
	x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static bool type_is(const wire_query_t *q, uint16_t type)
{
	return q->qtype == type || q->qtype == WIRE_ANY;
}

/* The org's own serial: another org's writes never show in it. */
static uint32_t serial(req_t *rq)
{
	return reg_org_serial(rq->ctx->txn, rq->net);
}

static int negative(req_t *rq, int rcode)
{
	wire_add_soa(rq->r, WIRE_NS_SEC, rq->apex, rq->ctx->conf->ttl, serial(rq),
	             rq->ctx->conf->ttl, rq->internal_off);
	return rcode;
}

/* ---- AAAA sets ------------------------------------------------------------------------- */

typedef struct {
	req_t *rq;
	size_t first;
	unsigned n;
	bool full;
	bool healthy; /* leave out the Machines with a critical check (healthy., some exist) */
	int err;      /* a registry error met inside a walk */
} aaaa_t;

static int put_aaaa(const reg_hit_t *h, void *arg)
{
	aaaa_t *a = arg;
	if (wire_add_aaaa(a->rq->r, a->rq->owner, a->rq->ctx->conf->ttl, h->ip)) {
		a->full = true;
		return 1;
	}
	a->n++;
	return 0;
}

static void aaaa_begin(req_t *rq, aaaa_t *a)
{
	*a = (aaaa_t){.rq = rq, .first = rq->r->len};
}

/* Over UDP, what did not fit is TC; over TCP the set is cut at a record boundary. */
static void aaaa_end(aaaa_t *a, bool shuffle)
{
	wire_resp_t *r = a->rq->r;
	if (a->full && !a->rq->cl->tcp)
		r->tc = true;
	if (!shuffle)
		return;
	/* every AAAA record is 28 bytes with its address at +12: shuffle in place */
	for (unsigned i = a->n; i > 1; i--) {
		/* j in [0, i) by a multiply-shift: no 64-bit division per swap */
		unsigned j = (unsigned)((rng_next(&a->rq->ctx->rng) >> 32) * i >> 32);
		if (j == i - 1)
			continue;
		uint8_t tmp[16], *x = r->buf + a->first + 28 * (i - 1) + 12;
		uint8_t *y = r->buf + a->first + 28 * j + 12;
		memcpy(tmp, x, 16), memcpy(x, y, 16), memcpy(y, tmp, 16);
	}
}

/* A walk that answers AAAA, or only tells whether the name exists. */
typedef int (*walk_t)(req_t *rq, reg_walk_fn fn, void *arg);

static int stop_at_first(const reg_hit_t *h, void *arg)
{
	(void)h, (void)arg;
	return 1;
}

/* healthy.: does the app have Machines with a critical check at all? Only then is each
 * address looked up (one point read); the bare forms never ask. */
static int healthy_filter(req_t *rq, bool *on)
{
	uint32_t n = 0;
	*on = false;
	if (!rq->n->healthy)
		return 0;
	int rc = reg_count_critical(rq->ctx->txn, rq->net, rq->n->app.p, rq->n->app.len, &n);
	*on = n > 0;
	return rc;
}

static int critical(req_t *rq, const uint8_t ip[16])
{
	return reg_critical(rq->ctx->txn, rq->net, rq->n->app.p, rq->n->app.len, ip);
}

static int answer_walk(req_t *rq, walk_t walk)
{
	if (!type_is(rq->q, WIRE_AAAA)) {
		int n = walk(rq, stop_at_first, NULL);
		return n < 0 ? WIRE_SERVFAIL : negative(rq, n ? WIRE_NOERROR : WIRE_NXDOMAIN);
	}
	aaaa_t a;
	aaaa_begin(rq, &a);
	int n = walk(rq, put_aaaa, &a);
	if (n < 0)
		return WIRE_SERVFAIL;
	if (n == 0)
		return negative(rq, WIRE_NXDOMAIN);
	if (a.n == 0 && !a.full)
		return negative(rq, WIRE_NOERROR); /* healthy.<id>.vm. of a critical one */
	aaaa_end(&a, true);
	return WIRE_NOERROR;
}

/* ---- the address sets: app, region, group, metadata ------------------------------------ */

static int put_ips(const uint8_t *ips, size_t n, void *arg)
{
	aaaa_t *a = arg;
	for (size_t i = 0; i < n; i++) {
		if (a->healthy) {
			int c = critical(a->rq, ips + 16 * i);
			if (c < 0) {
				a->err = c;
				return 1;
			}
			if (c)
				continue;
		}
		if (wire_add_aaaa(a->rq->r, a->rq->owner, a->rq->ctx->conf->ttl, ips + 16 * i)) {
			a->full = true;
			return 1;
		}
		a->n++;
	}
	return 0;
}

/* One seek finds the set; its addresses come a page at a time. */
static int answer_set(req_t *rq, int kind)
{
	const names_t *n = rq->n;
	bool aaaa = type_is(rq->q, WIRE_AAAA);
	aaaa_t a;
	aaaa_begin(rq, &a);
	if (aaaa && healthy_filter(rq, &a.healthy))
		return WIRE_SERVFAIL;
	int count = reg_ips(rq->ctx->txn, rq->net, kind, n->app.p, n->app.len, n->sub.p, n->sub.len,
	                    n->val.p, n->val.len, aaaa ? put_ips : NULL, &a);
	if (count < 0 || a.err)
		return WIRE_SERVFAIL;
	if (count == 0 && kind == REG_SET_APP && !n->global) {
		/* <app> with only stopped Machines: an empty non-terminal (all.vms.<app>);
		 * global.<app> has nothing below it */
		int any = reg_walk_all_app(rq->ctx->txn, rq->net, n->app.p, n->app.len,
		                           stop_at_first, NULL);
		if (any < 0)
			return WIRE_SERVFAIL;
		return negative(rq, any ? WIRE_NOERROR : WIRE_NXDOMAIN);
	}
	if (count == 0 || !aaaa || (a.n == 0 && !a.full)) /* healthy.: none healthy, NODATA */
		return negative(rq, count ? WIRE_NOERROR : WIRE_NXDOMAIN);
	aaaa_end(&a, true);
	return WIRE_NOERROR;
}

static int walk_flycast(req_t *rq, reg_walk_fn fn, void *arg)
{
	const names_t *n = rq->n;
	return reg_walk_flycast(rq->ctx->txn, rq->net, n->app.p, n->app.len, fn, arg);
}

/* One record found by a point lookup: a walk of zero or one. */
static int walk_vm(req_t *rq, reg_walk_fn fn, void *arg)
{
	reg_hit_t h;
	const names_t *n = rq->n;
	int rc = reg_find_vm(rq->ctx->txn, rq->net, n->app.p, n->app.len, n->sub.p, n->sub.len, &h);
	if (rc == -ENOENT)
		return 0;
	if (rc == 0 && n->healthy && fn != stop_at_first && (rc = critical(rq, h.ip)) == 1)
		return 1; /* the name exists, its Machine is left out */
	return rc < 0 ? rc : (fn(&h, arg), 1);
}

static int walk_peer(req_t *rq, reg_walk_fn fn, void *arg)
{
	reg_hit_t h;
	if (names_peer_hidden(rq->n->sub.p, rq->n->sub.len))
		return 0;
	int rc = reg_find_peer(rq->ctx->txn, rq->net, rq->n->sub.p, rq->n->sub.len, &h);
	if (rc == -ENOENT)
		return 0;
	return rc ? rc : (fn(&h, arg), 1);
}

/* ---- nearest ------------------------------------------------------------------------------- */

typedef struct {
	uint32_t dist; /* metres; UINT32_MAX: a region without coordinates */
	const char *name;
	uint8_t len;
} near_region_t;

typedef struct {
	reg_txn_t *txn;
	bool from; /* the querier's region is known */
	double lat, lon;
	near_region_t *regs;
	size_t n;
} near_regions_t;

static int collect_region(const char *name, size_t len, uint32_t count, void *arg)
{
	(void)count;
	near_regions_t *nr = arg;
	if (nr->n == REGIONS_SCRATCH)
		return 1;
	reg_region_t r;
	uint32_t d = UINT32_MAX;
	if (reg_get_region(nr->txn, name, len, &r) == 0)
		d = nr->from ? (uint32_t)(regions_km(nr->lat, nr->lon, r.lat, r.lon) * 1000.0)
		             : 0; /* no querier region: every known region is as near */
	nr->regs[nr->n++] = (near_region_t){d, name, (uint8_t)len};
	return 0;
}

static int cmp_region(const void *a, const void *b)
{
	const near_region_t *x = a, *y = b;
	if (x->dist != y->dist)
		return x->dist < y->dist ? -1 : 1;
	int c = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);
	return c ? c : x->len - y->len;
}

static int cmp_cand(const void *a, const void *b)
{
	const ans_cand_t *x = a, *y = b;
	int c = memcmp(x->id, y->id, x->id_len < y->id_len ? x->id_len : y->id_len);
	return c ? c : x->id_len - y->id_len;
}

typedef struct {
	ans_cand_t *cand;
	size_t n, max;
	uint32_t dist;
	req_t *healthy; /* healthy.topN: the N nearest without a critical check */
	int err;
} near_fill_t;

static int add_cand(const reg_hit_t *h, void *arg)
{
	near_fill_t *f = arg;
	if (f->n == f->max)
		return 1;
	if (f->healthy) {
		int c = critical(f->healthy, h->ip);
		if (c)
			return c < 0 ? (f->err = c, 1) : 0;
	}
	ans_cand_t *c = &f->cand[f->n++];
	c->dist = f->dist;
	memcpy(c->ip, h->ip, 16);
	c->id = h->id, c->id_len = h->id_len;
	return 0;
}

/* The querier's region: its Machine's (in any state) or peer's in the same org, else
 * the server's. Sets the coordinates when the registry knows the region. */
static void querier_region(req_t *rq, near_regions_t *nr)
{
	reg_hit_t h;
	const ans_conf_t *conf = rq->ctx->conf;
	const char *code = conf->region;
	size_t len = conf->region_len;
	reg_txn_t *txn = rq->ctx->txn;
	if (org_is_6pn(rq->cl->src) && org_net_of(rq->cl->src) == rq->net &&
	    (reg_find_addr(txn, rq->cl->src, false, &h) == 0 ||
	     reg_find_any_addr(txn, rq->cl->src, &h) == 0))
		code = h.region, len = h.region_len;
	reg_region_t r;
	nr->from = len && reg_get_region(txn, code, len, &r) == 0;
	if (!nr->from && code != conf->region && conf->region_len)
		nr->from = reg_get_region(txn, conf->region, conf->region_len, &r) == 0;
	if (nr->from)
		nr->lat = r.lat, nr->lon = r.lon;
}

static int answer_nearest(req_t *rq)
{
	const names_t *n = rq->n;
	uint32_t count;
	if (reg_count_app(rq->ctx->txn, rq->net, n->app.p, n->app.len, &count))
		return WIRE_SERVFAIL;
	if (count == 0)
		return negative(rq, WIRE_NXDOMAIN);
	if (!type_is(rq->q, WIRE_AAAA))
		return negative(rq, WIRE_NOERROR);

	near_region_t regs[REGIONS_SCRATCH];
	near_regions_t nr = {.txn = rq->ctx->txn, .regs = regs};
	querier_region(rq, &nr);
	if (reg_walk_app_regions(rq->ctx->txn, rq->net, n->app.p, n->app.len, collect_region, &nr) <
	    0)
		return WIRE_SERVFAIL;
	qsort(regs, nr.n, sizeof(regs[0]), cmp_region);

	size_t want = n->top < ANS_NEAREST_MAX ? n->top : ANS_NEAREST_MAX;
	near_fill_t f = {rq->ctx->cand, 0, want, 0, NULL, 0};
	bool filter;
	if (healthy_filter(rq, &filter))
		return WIRE_SERVFAIL;
	f.healthy = filter ? rq : NULL;
	for (size_t i = 0; i < nr.n && f.n < want;) {
		/* regions at the same distance are one group: their Machines merge by id */
		size_t start = f.n, j = i;
		f.dist = regs[i].dist;
		for (; j < nr.n && regs[j].dist == regs[i].dist; j++) {
			/* each region walks in id order: its first (want - start) are enough */
			size_t cap = f.n + (want - start);
			f.max = cap < ANS_NEAREST_MAX ? cap : ANS_NEAREST_MAX;
			if (reg_walk_app_region(rq->ctx->txn, rq->net, n->app.p, n->app.len,
			                        regs[j].name, regs[j].len, add_cand, &f) < 0 ||
			    f.err)
				return WIRE_SERVFAIL;
		}
		qsort(f.cand + start, f.n - start, sizeof(*f.cand), cmp_cand);
		if (f.n > want)
			f.n = want;
		i = j;
	}
	if (f.n == 0)
		return negative(rq, WIRE_NOERROR); /* healthy.: none healthy */
	aaaa_t a;
	aaaa_begin(rq, &a);
	for (size_t i = 0; i < f.n; i++) {
		reg_hit_t h = {.ip = f.cand[i].ip};
		if (put_aaaa(&h, &a))
			break;
	}
	aaaa_end(&a, false);
	return WIRE_NOERROR;
}

/* ---- TXT lists ----------------------------------------------------------------------------------
 */

typedef struct {
	ans_item_fn fn;
	void *arg;
	int n;
	names_form_t form;
} items_t;

static int emit(items_t *it, const char *s, size_t len)
{
	return it->fn(s, len, it->arg);
}

static char *put(char *p, const void *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

/* One item of vms., _peer or _instances, formatted by hand: this is the query path. */
static int item_hit(const reg_hit_t *h, void *arg)
{
	items_t *it = arg;
	char buf[512], *p = buf;
	if (it->form == NAME_PEERS && names_peer_hidden(h->id, h->id_len))
		return 0;
	if (it->n++)
		*p++ = it->form == NAME_INSTANCES || it->form == NAME_ALL_INSTANCES ? ';' : ',';
	if (it->form == NAME_VMS || it->form == NAME_ALL_VMS) {
		p = put(p, h->id, h->id_len);
		*p++ = ' ';
		p = put(p, h->region, h->region_len);
	} else if (it->form == NAME_INSTANCES || it->form == NAME_ALL_INSTANCES) {
		p = put(p, "instance=", 9);
		p = put(p, h->id, h->id_len);
		p = put(p, ",app=", 5);
		p = put(p, h->app, h->app_len);
		p = put(p, ",ip=", 4);
		inet_ntop(AF_INET6, h->ip, p, INET6_ADDRSTRLEN);
		p += strlen(p);
		p = put(p, ",region=", 8);
		p = put(p, h->region, h->region_len);
	} else { /* peers */
		p = put(p, h->id, h->id_len);
	}
	return emit(it, buf, (size_t)(p - buf));
}

static int item_name(const char *name, size_t len, uint32_t count, void *arg)
{
	(void)count;
	items_t *it = arg;
	char buf[2 * (REG_LABEL_MAX + 1)];
	size_t n = 0;
	if (len > REG_LABEL_MAX)
		return 0;
	if (it->n++)
		buf[n++] = ',';
	memcpy(buf + n, name, len);
	return emit(it, buf, n + len);
}

int ans_txt_items(reg_txn_t *txn, uint32_t net, names_form_t form, const char *app, size_t al,
                  ans_item_fn fn, void *arg)
{
	items_t it = {fn, arg, 0, form};
	int rc;
	switch (form) {
	case NAME_VMS:
		rc = reg_walk_app(txn, net, app, al, item_hit, &it);
		break;
	case NAME_REGIONS:
		rc = reg_walk_app_regions(txn, net, app, al, item_name, &it);
		break;
	case NAME_APPS:
		rc = reg_walk_apps(txn, net, item_name, &it);
		break;
	case NAME_PEERS:
		rc = reg_walk_peers(txn, net, item_hit, &it);
		break;
	case NAME_INSTANCES:
		rc = reg_walk_org(txn, net, item_hit, &it);
		break;
	case NAME_ALL_VMS:
		rc = reg_walk_all_app(txn, net, app, al, item_hit, &it);
		break;
	case NAME_ALL_REGIONS:
		rc = reg_walk_all_app_regions(txn, net, app, al, item_name, &it);
		break;
	case NAME_ALL_INSTANCES:
		rc = reg_walk_all_org(txn, net, item_hit, &it);
		break;
	default:
		return -EINVAL;
	}
	return rc < 0 ? rc : it.n;
}

typedef struct {
	wire_resp_t *r;
	bool full;
} txt_t;

static int put_item(const char *item, size_t len, void *arg)
{
	txt_t *t = arg;
	size_t mark = wire_txt_mark(t->r);
	if (wire_txt_append(t->r, item, len)) {
		wire_txt_rewind(t->r, mark); /* items are whole or absent */
		t->full = true;
		return 1;
	}
	return 0;
}

/* An app with a Machine in any state (the all. names). 1, 0, or < 0. */
static int app_any(req_t *rq)
{
	const names_t *n = rq->n;
	return reg_walk_all_app(rq->ctx->txn, rq->net, n->app.p, n->app.len, stop_at_first, NULL);
}

static int answer_txt(req_t *rq, bool app_scoped)
{
	const names_t *n = rq->n;
	if (app_scoped && (n->form == NAME_ALL_VMS || n->form == NAME_ALL_REGIONS)) {
		int any = app_any(rq);
		if (any <= 0)
			return any < 0 ? WIRE_SERVFAIL : negative(rq, WIRE_NXDOMAIN);
	} else if (app_scoped) {
		uint32_t count;
		if (reg_count_app(rq->ctx->txn, rq->net, n->app.p, n->app.len, &count))
			return WIRE_SERVFAIL;
		if (count == 0) {
			/* only stopped Machines: vms.<app> and regions.<app> are the empty
			 * non-terminals above all.vms.<app> and all.regions.<app> */
			int any = app_any(rq);
			if (any < 0)
				return WIRE_SERVFAIL;
			return negative(rq, any ? WIRE_NOERROR : WIRE_NXDOMAIN);
		}
	}
	if (!type_is(rq->q, WIRE_TXT))
		return negative(rq, WIRE_NOERROR);
	txt_t t = {rq->r, false};
	if (wire_txt_begin(rq->r, rq->owner, rq->ctx->conf->ttl)) {
		rq->r->tc = !rq->cl->tcp;
		return WIRE_NOERROR;
	}
	int items =
	        ans_txt_items(rq->ctx->txn, rq->net, n->form, n->app.p, n->app.len, put_item, &t);
	if (items < 0)
		return WIRE_SERVFAIL;
	/* an empty list is one TXT record of one empty string (wire_txt_end writes it) */
	if (t.full && !rq->cl->tcp) {
		/* the record does not fit whole: TC, and the client asks again over TCP */
		wire_txt_abort(rq->r);
		rq->r->tc = true;
		return WIRE_NOERROR;
	}
	wire_txt_end(rq->r);
	return WIRE_NOERROR;
}

/* ---- PTR
 * ------------------------------------------------------------------------------------------ */

static size_t put_label(uint8_t *p, const char *s, size_t len)
{
	p[0] = (uint8_t)len;
	memcpy(p + 1, s, len);
	return 1 + len;
}

static int answer_ptr(req_t *rq)
{
	reg_hit_t h;
	const uint8_t *addr = rq->n->addr;
	if (org_net_of(addr) != rq->net)
		return negative(rq, WIRE_NXDOMAIN); /* never another org's */
	int rc = reg_find_addr(rq->ctx->txn, addr, true, &h);
	if (rc == -ENOENT)
		return negative(rq, WIRE_NXDOMAIN);
	if (rc)
		return WIRE_SERVFAIL;
	if (h.kind == REG_HIT_PEER && names_peer_hidden(h.id, h.id_len))
		return negative(rq, WIRE_NXDOMAIN);
	if (!type_is(rq->q, WIRE_PTR))
		return negative(rq, WIRE_NOERROR);
	uint8_t target[WIRE_NAME_MAX + 1];
	size_t n = put_label(target, h.id, h.id_len);
	if (h.kind == REG_HIT_MACHINE) {
		n += put_label(target + n, "vm", 2);
		n += put_label(target + n, h.app, h.app_len);
	} else {
		n += put_label(target + n, "_peer", 5);
	}
	n += put_label(target + n, "internal", 8);
	target[n++] = 0;
	if (wire_add_ptr(rq->r, rq->owner, rq->ctx->conf->ttl, target, n))
		rq->r->tc = !rq->cl->tcp;
	return WIRE_NOERROR;
}

/* A peer without names (interactive-*) makes no reverse name exist either. */
static bool addr_hidden(const reg_hit_t *h)
{
	return h->kind == REG_HIT_PEER && names_peer_hidden(h->id, h->id_len);
}

/* A shorter reverse name exists while a named address of the querier's org lies below it. */
static int answer_ptr_ent(req_t *rq)
{
	int rc = reg_addr_prefix(rq->ctx->txn, rq->net, rq->n->addr, rq->n->nibbles, addr_hidden);
	if (rc < 0)
		return WIRE_SERVFAIL;
	return negative(rq, rc ? WIRE_NOERROR : WIRE_NXDOMAIN);
}

/* ---- the zones
 * -------------------------------------------------------------------------------------- */

/* The apex NS target is this server: the address the query arrived on (A when that
 * is IPv4). A zone file cannot say that; `internalctl zone` writes ::1. */
static int answer_nshost(req_t *rq)
{
	static const uint8_t v4mapped[12] = {[10] = 0xff, [11] = 0xff};
	static const uint8_t unspec[16];
	const uint8_t *dst = rq->cl->dst;
	bool v4 = memcmp(dst, v4mapped, 12) == 0, known = memcmp(dst, unspec, 16) != 0;
	uint32_t ttl = rq->ctx->conf->ttl;
	int rc = -1;
	if (known && v4 && type_is(rq->q, WIRE_A))
		rc = wire_add_a(rq->r, rq->owner, ttl, dst + 12);
	else if (known && !v4 && type_is(rq->q, WIRE_AAAA))
		rc = wire_add_aaaa(rq->r, rq->owner, ttl, dst);
	return rc == 0 ? WIRE_NOERROR : negative(rq, WIRE_NOERROR);
}

static int answer_apex(req_t *rq)
{
	uint32_t ttl = rq->ctx->conf->ttl;
	bool any = rq->q->qtype == WIRE_ANY;
	if (rq->q->qtype != WIRE_SOA && rq->q->qtype != WIRE_NS && !any)
		return negative(rq, WIRE_NOERROR);
	if (rq->q->qtype == WIRE_SOA || any)
		wire_add_soa(rq->r, WIRE_AN, rq->apex, ttl, serial(rq), ttl, rq->internal_off);
	if (rq->q->qtype == WIRE_NS || any)
		wire_add_ns(rq->r, rq->apex, ttl, rq->internal_off);
	return WIRE_NOERROR;
}

static int answer_zone(req_t *rq)
{
	const names_t *n = rq->n;
	uint32_t count;
	switch (n->form) {
	case NAME_APEX:
		return answer_apex(rq);
	case NAME_ENT:
		if (reg_count_app(rq->ctx->txn, rq->net, n->app.p, n->app.len, &count))
			return WIRE_SERVFAIL;
		return negative(rq, count ? WIRE_NOERROR : WIRE_NXDOMAIN);
	case NAME_APP:
		return answer_set(rq, REG_SET_APP);
	case NAME_REGION:
		return answer_set(rq, REG_SET_REGION);
	case NAME_GROUP:
		return answer_set(rq, REG_SET_GROUP);
	case NAME_META:
		return answer_set(rq, REG_SET_META);
	case NAME_META_KEY:
		return answer_set(rq, REG_SET_META_KEY);
	case NAME_META_ENT: {
		int has = reg_has_meta(rq->ctx->txn, rq->net, n->app.p, n->app.len);
		return has < 0 ? WIRE_SERVFAIL : negative(rq, has ? WIRE_NOERROR : WIRE_NXDOMAIN);
	}
	case NAME_ALL_VMS:
	case NAME_ALL_REGIONS:
		return answer_txt(rq, true);
	case NAME_ALL_INSTANCES:
		return answer_txt(rq, false);
	case NAME_VM:
		return answer_walk(rq, walk_vm);
	case NAME_PEER:
		return answer_walk(rq, walk_peer);
	case NAME_FLYCAST:
		return answer_walk(rq, walk_flycast);
	case NAME_NEAREST:
		return answer_nearest(rq);
	case NAME_VMS:
	case NAME_REGIONS:
		return answer_txt(rq, true);
	case NAME_APPS:
	case NAME_PEERS:
	case NAME_INSTANCES:
		return answer_txt(rq, false);
	case NAME_PTR:
		return answer_ptr(rq);
	case NAME_NSHOST:
		return answer_nshost(rq);
	case NAME_PTR_ENT:
		return answer_ptr_ent(rq);
	default:
		return negative(rq, WIRE_NXDOMAIN);
	}
}

ans_action_t ans_process(ans_ctx_t *ctx, const ans_client_t *cl, const uint8_t *pkt, size_t len,
                         uint8_t *out, size_t cap, size_t *outlen)
{
	const ans_conf_t *conf = ctx->conf;
	wire_query_t *q = &ctx->q;
	int rcode = wire_parse_query(pkt, len, q);
	ctx->last_rcode = ctx->last_form = ctx->last_refused = -1;
	if (rcode == WIRE_DROP)
		return ANS_DROP;

	size_t size = cl->tcp ? WIRE_TCP_MAX : wire_udp_size(q);
	const char *nsid = q->edns_nsid ? conf->nsid : NULL;
	size_t nsid_len = nsid ? conf->nsid_len : 0;
	wire_resp_t r;
	if (wire_resp_begin(&r, out, cap, size, q->edns ? wire_opt_size(nsid_len) : 0, pkt, q))
		return ANS_DROP;

	bool aa = false;
	uint32_t net = 0;
	names_t n;
	/* a source refused is refused for everything: no FORMERR, NOTIMP or BADVERS either */
	org_verdict_t v = org_classify(&conf->acl, cl->src, cl->dst, ctx->has_default,
	                               ctx->default_net, &net);
	q->scope = v == ORG_OK ? net : 0; /* a forwarded name is cached per org, */
	memcpy(q->source, cl->src, 16);   /* and forwarded within its source's share */
	if (v == ORG_REFUSED || v == ORG_OTHER_ORG) {
		ctx->last_refused =
		        v == ORG_REFUSED ? ANS_REFUSED_NOT_ALLOWED : ANS_REFUSED_OTHER_ORG;
		rcode = WIRE_REFUSED;
		wire_resp_ede(&r, WIRE_EDE_PROHIBITED,
		              v == ORG_REFUSED ? "source not allowed" : "another org's resolver");
		goto done;
	}
	if (rcode == WIRE_NOTIMP)
		wire_resp_ede(&r, WIRE_EDE_NOT_SUPPORTED,
		              q->opcode ? "opcode not supported" : "QTYPE not supported");
	if (rcode != WIRE_OK)
		goto done;
	if (q->qclass != WIRE_CLASS_IN || q->qtype == WIRE_AXFR || q->qtype == WIRE_IXFR) {
		ctx->last_refused =
		        q->qclass != WIRE_CLASS_IN ? ANS_REFUSED_CLASS : ANS_REFUSED_TRANSFER;
		rcode = WIRE_REFUSED;
		goto done;
	}
	names_classify(q->qname, q->qname_len, &n);
	if (n.form == NAME_OUTSIDE) {
		if (conf->forward)
			return ANS_FORWARD;
		ctx->last_refused = ANS_REFUSED_NO_FORWARD;
		rcode = WIRE_REFUSED;
		goto done;
	}
	/* before the org check: a registry never synced knows no org, not even the default */
	if (ctx->not_ready) {
		rcode = WIRE_SERVFAIL;
		wire_resp_ede(&r, WIRE_EDE_NOT_READY, "registry not synced yet");
		goto done;
	}
	if (v == ORG_NONE) {
		ctx->last_refused = ANS_REFUSED_NO_ORG;
		rcode = WIRE_REFUSED;
		goto done;
	}
	req_t rq = {
	        .ctx = ctx,
	        .r = &r,
	        .q = q,
	        .n = &n,
	        .cl = cl,
	        .net = net,
	        .owner = WIRE_HDR,
	        .apex = (uint16_t)(WIRE_HDR + n.apex_off),
	        .internal_off = n.zone == ZONE_INTERNAL ? (uint16_t)(WIRE_HDR + n.apex_off) : 0,
	};
	rcode = answer_zone(&rq);
	ctx->last_form = (int)n.form;
	aa = rcode == WIRE_NOERROR || rcode == WIRE_NXDOMAIN;
done:
	ctx->last_rcode = rcode;
	wire_resp_rcode(&r, rcode);
	wire_resp_flags(&r, aa, conf->forward && q->opcode == 0); /* RA only on QUERY */
	if (q->edns)
		wire_add_opt(&r, q->edns_do, nsid, nsid_len);
	*outlen = wire_resp_end(&r);
	return ANS_REPLY;
}
