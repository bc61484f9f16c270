/* test_cache.c — the cache of forwarded answers (include/cache.h): what is stored and for
 * how long, what an answer from it looks like to the asker, the byte bound, stale and
 * prefetch, and the table of questions in flight. The clock is the tests' own: every
 * call takes the time, so a day passes in a line. Messages are built and read with
 * ldns, independent of the codec under test. */
#include "testreg.h"

#include "cache.h"
#include "wire.h"

#define T0 1000000u /* ms: an arbitrary start of the clock */
#define S  1000u

typedef struct {
	uint8_t pkt[512];
	size_t len;
	wire_query_t q;
} query_t;

/* A client query: name as the client writes it; do_/cd bits; edns. */
static query_t ask(const char *name, ldns_rr_type type, uint16_t id, bool edns, bool do_, bool cd)
{
	query_t r;
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
	                 LDNS_STATUS_OK);
	ldns_pkt_set_id(p, id);
	ldns_pkt_set_cd(p, cd);
	if (edns) {
		ldns_pkt_set_edns_udp_size(p, 1232);
		ldns_pkt_set_edns_do(p, do_);
		ldns_pkt_set_edns_data(p, ldns_rdf_new_frm_str(LDNS_RDF_TYPE_HEX, ""));
	}
	uint8_t *w = NULL;
	assert_int_equal(ldns_pkt2wire(&w, p, &r.len), LDNS_STATUS_OK);
	assert_true(r.len <= sizeof(r.pkt));
	memcpy(r.pkt, w, r.len);
	free(w);
	ldns_pkt_free(p);
	assert_int_equal(wire_parse_query(r.pkt, r.len, &r.q), WIRE_OK);
	return r;
}

static query_t ask_a(const char *name)
{
	return ask(name, LDNS_RR_TYPE_A, 0x1234, true, false, false);
}

/* An upstream's answer to qu: rcode, records "owner TTL IN TYPE RDATA" per section
 * (NULL-terminated lists), optional flags. */
typedef struct {
	uint8_t *wire;
	size_t len;
} msg_t;

static msg_t reply(const query_t *qu, ldns_pkt_rcode rcode, const char *const *an,
                   const char *const *ns, bool tc)
{
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_wire2pkt(&q, qu->pkt, qu->len), LDNS_STATUS_OK);
	ldns_pkt *p = ldns_pkt_new();
	ldns_pkt_set_id(p, 0x4242);
	ldns_pkt_set_qr(p, true);
	ldns_pkt_set_rd(p, true);
	ldns_pkt_set_ra(p, true);
	ldns_pkt_set_tc(p, tc);
	ldns_pkt_set_rcode(p, (uint8_t)rcode);
	ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION,
	                 ldns_rr_clone(ldns_rr_list_rr(ldns_pkt_question(q), 0)));
	for (int i = 0; an && an[i]; i++) {
		ldns_rr *rr = NULL;
		assert_int_equal(ldns_rr_new_frm_str(&rr, an[i], 0, NULL, NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr);
	}
	for (int i = 0; ns && ns[i]; i++) {
		ldns_rr *rr = NULL;
		assert_int_equal(ldns_rr_new_frm_str(&rr, ns[i], 0, NULL, NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(p, LDNS_SECTION_AUTHORITY, rr);
	}
	if (ldns_pkt_edns(q)) {
		ldns_pkt_set_edns_udp_size(p, 1232);
		ldns_pkt_set_edns_do(p, ldns_pkt_edns_do(q));
		ldns_pkt_set_edns_data(p, ldns_rdf_new_frm_str(LDNS_RDF_TYPE_HEX, ""));
	}
	msg_t m;
	assert_int_equal(ldns_pkt2wire(&m.wire, p, &m.len), LDNS_STATUS_OK);
	ldns_pkt_free(p);
	ldns_pkt_free(q);
	return m;
}

static cache_t *mk(size_t bytes)
{
	cache_conf_t conf = {
	        .max_bytes = bytes, .max_ttl = 86400, .neg_max_ttl = 3600, .stale_ttl = 86400};
	cache_t *c = NULL;
	assert_int_equal(cache_create(&c, &conf), 0);
	return c;
}

/* Looks qu up at now; returns the result, the parsed answer in *out (or NULL). */
static int look(cache_t *c, const query_t *qu, uint64_t now, bool stale_ok, ldns_pkt **out)
{
	uint8_t buf[4096];
	size_t len = 0;
	int r = cache_lookup(c, qu->pkt, &qu->q, 1232, now, stale_ok, buf, sizeof(buf), &len);
	*out = NULL;
	if (r != CACHE_MISS)
		assert_int_equal(ldns_wire2pkt(out, buf, len), LDNS_STATUS_OK);
	return r;
}

/* Stores the upstream's answer to <prefix><i>.example.test. A (one record, TTL 300,
 * 192.0.2.octet) at T0; returns the query. */
static query_t store_a(cache_t *c, const char *prefix, int i, int octet)
{
	char name[64], rr[128];
	snprintf(name, sizeof(name), "%s%d.example.test.", prefix, i);
	snprintf(rr, sizeof(rr), "%s 300 IN A 192.0.2.%d", name, octet);
	const char *const an[] = {rr, NULL};
	query_t a = ask_a(name);
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), 0);
	free(m.wire);
	return a;
}

static uint32_t ttl_of(ldns_pkt *p, ldns_pkt_section sec, size_t i)
{
	ldns_rr_list *l = ldns_pkt_get_section_clone(p, sec);
	assert_true(ldns_rr_list_rr_count(l) > i);
	uint32_t t = ldns_rr_ttl(ldns_rr_list_rr(l, i));
	ldns_rr_list_deep_free(l);
	return t;
}

static const char *const SOA[] = {
        "example.test. 300 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 "
        "86400 30",
        NULL};

static void test_hit_has_askers_id_case_and_counted_down_ttls(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	query_t a = ask_a("www.example.test.");
	const char *const an[] = {"www.example.test. 300 IN A 192.0.2.1",
	                          "www.example.test. 600 IN A 192.0.2.2", NULL};
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), 0);
	query_t b = ask("WwW.ExAmPlE.tEsT.", LDNS_RR_TYPE_A, 0xbeef, true, false, false);
	ldns_pkt *p;
	assert_int_equal(look(c, &b, T0 + 100 * S + 999, false, &p), CACHE_HIT);
	assert_int_equal(ldns_pkt_id(p), 0xbeef);
	assert_true(ldns_pkt_ra(p));
	assert_true(ldns_pkt_rd(p));
	char *qs = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
	assert_string_equal(qs, "WwW.ExAmPlE.tEsT.");
	free(qs);
	assert_int_equal(ldns_pkt_ancount(p), 2);
	/* the entry lives for the smallest TTL; each record counts down from its own */
	uint32_t t0 = ttl_of(p, LDNS_SECTION_ANSWER, 0), t1 = ttl_of(p, LDNS_SECTION_ANSWER, 1);
	assert_true((t0 == 200 && t1 == 500) || (t0 == 500 && t1 == 200));
	assert_non_null(ldns_pkt_edns(p) ? p : NULL); /* the OPT record is kept */
	ldns_pkt_free(p);
	/* a reader whose clock is a little behind the writer's: nothing counted down */
	assert_int_equal(look(c, &b, T0 - 5, false, &p), CACHE_HIT);
	assert_int_equal(ttl_of(p, LDNS_SECTION_ANSWER, 0) % 300, 0);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &b, T0 + 299 * S, false, &p), CACHE_HIT_PREFETCH);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &b, T0 + 300 * S, false, &p), CACHE_MISS);
	cache_stats_t s;
	cache_stats(c, &s);
	assert_int_equal(s.hits, 3);
	assert_int_equal(s.misses, 1);
	assert_int_equal(s.entries, 1);
	free(m.wire);
	cache_free(c);
}

static void test_positive_ttl_clamped_by_max_ttl(void **st)
{
	(void)st;
	cache_conf_t conf = {
	        .max_bytes = 1 << 20, .max_ttl = 60, .neg_max_ttl = 10, .stale_ttl = 0};
	cache_t *c = NULL;
	assert_int_equal(cache_create(&c, &conf), 0);
	query_t a = ask_a("long.example.test.");
	const char *const an[] = {"long.example.test. 604800 IN A 192.0.2.1", NULL};
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), 0);
	ldns_pkt *p;
	assert_int_equal(look(c, &a, T0, false, &p), CACHE_HIT);
	assert_int_equal(ttl_of(p, LDNS_SECTION_ANSWER, 0), 60);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &a, T0 + 60 * S, false, &p), CACHE_MISS);
	assert_int_equal(look(c, &a, T0 + 60 * S, true, &p), CACHE_MISS); /* stale off */
	free(m.wire);
	cache_free(c);
}

static void test_negative_lives_for_soa_minimum(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	query_t nx = ask_a("nope.example.test.");
	msg_t m = reply(&nx, LDNS_RCODE_NXDOMAIN, NULL, SOA, false);
	assert_int_equal(cache_insert(c, &nx.q, m.wire, m.len, T0), 0);
	ldns_pkt *p;
	assert_int_equal(look(c, &nx, T0 + 10 * S, false, &p), CACHE_HIT);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	assert_int_equal(ttl_of(p, LDNS_SECTION_AUTHORITY, 0), 20); /* min(300, 30) - 10 */
	ldns_pkt_free(p);
	assert_int_equal(look(c, &nx, T0 + 30 * S, false, &p), CACHE_MISS);
	free(m.wire);
	/* NODATA the same */
	query_t nd = ask("www.example.test.", LDNS_RR_TYPE_MX, 7, true, false, false);
	m = reply(&nd, LDNS_RCODE_NOERROR, NULL, SOA, false);
	assert_int_equal(cache_insert(c, &nd.q, m.wire, m.len, T0), 0);
	assert_int_equal(look(c, &nd, T0 + 26 * S, false, &p), CACHE_HIT);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &nd, T0 + 30 * S, false, &p), CACHE_MISS);
	free(m.wire);
	/* without SOA: not kept (RFC 2308 section 5) */
	query_t ns = ask_a("nosoa.example.test.");
	m = reply(&ns, LDNS_RCODE_NXDOMAIN, NULL, NULL, false);
	assert_int_equal(cache_insert(c, &ns.q, m.wire, m.len, T0), -EINVAL);
	free(m.wire);
	cache_free(c);
}

static void test_negative_clamped_by_its_max(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20); /* neg_max_ttl 3600 */
	query_t nx = ask_a("nope.example.test.");
	const char *const soa[] = {"example.test. 86400 IN SOA ns.example.test. h.example.test. "
	                           "1 3600 600 86400 86400",
	                           NULL};
	msg_t m = reply(&nx, LDNS_RCODE_NXDOMAIN, NULL, soa, false);
	assert_int_equal(cache_insert(c, &nx.q, m.wire, m.len, T0), 0);
	ldns_pkt *p;
	assert_int_equal(look(c, &nx, T0, false, &p), CACHE_HIT);
	assert_int_equal(ttl_of(p, LDNS_SECTION_AUTHORITY, 0), 3600);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &nx, T0 + 3600 * S, false, &p), CACHE_MISS);
	free(m.wire);
	cache_free(c);
}

static void test_never_stored(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	query_t a = ask_a("www.example.test.");
	const char *const an[] = {"www.example.test. 300 IN A 192.0.2.1", NULL};
	const char *const an0[] = {"www.example.test. 0 IN A 192.0.2.1", NULL};
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, true); /* TC */
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), -EINVAL);
	free(m.wire);
	m = reply(&a, LDNS_RCODE_NOERROR, an0, NULL, false); /* TTL 0 */
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), -EINVAL);
	free(m.wire);
	m = reply(&a, LDNS_RCODE_REFUSED, NULL, NULL, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), -EINVAL);
	free(m.wire);
	m = reply(&a, LDNS_RCODE_SERVFAIL, NULL, SOA, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), -EINVAL);
	free(m.wire);
	m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len - 1, T0), -EINVAL); /* cut */
	query_t other = ask_a("other.example.test.");
	assert_int_equal(cache_insert(c, &other.q, m.wire, m.len, T0), -EINVAL); /* not its */
	m.wire[m.len - 2] = 0xff; /* the OPT rdlength past the end */
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), -EINVAL);
	free(m.wire);
	ldns_pkt *p;
	assert_int_equal(look(c, &a, T0, false, &p), CACHE_MISS);
	cache_stats_t s;
	cache_stats(c, &s);
	assert_int_equal(s.entries, 0);
	cache_free(c);
}

static void test_do_cd_and_edns_kept_apart(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	query_t plain = ask("www.example.test.", LDNS_RR_TYPE_A, 1, true, false, false);
	query_t dnssec = ask("www.example.test.", LDNS_RR_TYPE_A, 2, true, true, false);
	query_t cd = ask("www.example.test.", LDNS_RR_TYPE_A, 3, true, false, true);
	query_t noedns = ask("www.example.test.", LDNS_RR_TYPE_A, 4, false, false, false);
	const char *const an[] = {"www.example.test. 300 IN A 192.0.2.1", NULL};
	msg_t m = reply(&dnssec, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &dnssec.q, m.wire, m.len, T0), 0);
	free(m.wire);
	ldns_pkt *p;
	assert_int_equal(look(c, &plain, T0, false, &p), CACHE_MISS);
	assert_int_equal(look(c, &cd, T0, false, &p), CACHE_MISS);
	assert_int_equal(look(c, &noedns, T0, false, &p), CACHE_MISS);
	assert_int_equal(look(c, &dnssec, T0, false, &p), CACHE_HIT);
	assert_true(ldns_pkt_edns_do(p));
	ldns_pkt_free(p);
	m = reply(&noedns, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &noedns.q, m.wire, m.len, T0), 0);
	free(m.wire);
	assert_int_equal(look(c, &noedns, T0, false, &p), CACHE_HIT);
	assert_false(ldns_pkt_edns(p)); /* no OPT to a client that sent none */
	ldns_pkt_free(p);
	m = reply(&cd, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &cd.q, m.wire, m.len, T0), 0);
	free(m.wire);
	assert_int_equal(look(c, &cd, T0, false, &p), CACHE_HIT);
	assert_true(ldns_pkt_cd(p));
	ldns_pkt_free(p);
	assert_int_equal(look(c, &plain, T0, false, &p), CACHE_MISS);
	cache_free(c);
}

static void test_larger_than_client_takes_is_tc(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	query_t a = ask_a("big.example.test.");
	char rr[40][64];
	const char *an[41];
	for (int i = 0; i < 40; i++) {
		snprintf(rr[i], sizeof(rr[i]), "big.example.test. 300 IN A 198.51.100.%d", i + 1);
		an[i] = rr[i];
	}
	an[40] = NULL;
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_true(m.len > 512);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), 0);
	uint8_t buf[4096];
	size_t len = 0;
	assert_int_equal(cache_lookup(c, a.pkt, &a.q, 512, T0, false, buf, sizeof(buf), &len),
	                 CACHE_HIT);
	/* header, question and, the query having EDNS, an OPT (RFC 6891 section 6.1.1) */
	assert_true(a.q.edns);
	assert_int_equal(len, a.q.question_end + wire_opt_size(0));
	ldns_pkt *p;
	assert_int_equal(ldns_wire2pkt(&p, buf, len), LDNS_STATUS_OK);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_true(ldns_pkt_edns(p));
	assert_int_equal(ldns_pkt_edns_udp_size(p), WIRE_EDNS_SIZE);
	ldns_pkt_free(p);
	assert_int_equal(cache_lookup(c, a.pkt, &a.q, 1232, T0, false, buf, sizeof(buf), &len),
	                 CACHE_HIT);
	assert_int_equal(len, m.len);
	free(m.wire);
	cache_free(c);
}

static void test_stale_answers_have_ttl_30_within_the_window(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20); /* stale_ttl one day */
	query_t a = ask_a("www.example.test.");
	const char *const an[] = {"www.example.test. 60 IN A 192.0.2.1", NULL};
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), 0);
	free(m.wire);
	ldns_pkt *p;
	uint64_t later = T0 + 3600 * S;
	assert_int_equal(look(c, &a, later, false, &p), CACHE_MISS); /* fresh only */
	assert_int_equal(look(c, &a, later, true, &p), CACHE_STALE);
	assert_int_equal(ttl_of(p, LDNS_SECTION_ANSWER, 0), CACHE_STALE_TTL);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &a, T0 + 60 * S + 86400 * S, true, &p), CACHE_MISS);
	cache_stats_t s;
	cache_stats(c, &s);
	assert_int_equal(s.stale, 1);
	assert_int_equal(s.entries, 0); /* past the window it is gone */
	cache_free(c);
}

static void test_servfail_from_every_upstream(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	/* no entry: a SERVFAIL for a few seconds */
	query_t a = ask_a("down.example.test.");
	assert_int_equal(cache_insert_servfail(c, a.pkt, a.len, &a.q, T0), 0);
	ldns_pkt *p;
	assert_int_equal(look(c, &a, T0 + (CACHE_SERVFAIL_TTL - 1) * S, false, &p), CACHE_HIT);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	assert_true(ldns_pkt_edns(p) != 0);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &a, T0 + CACHE_SERVFAIL_TTL * S, false, &p), CACHE_MISS);
	cache_stats_t cs; /* a stored SERVFAIL answered: counted apart, not a hit */
	cache_stats(c, &cs);
	assert_int_equal(cs.servfail, 1);
	assert_int_equal(cs.hits, 0);
	/* an expired entry: stale even to fresh lookups for those seconds */
	query_t b = ask_a("www.example.test.");
	const char *const an[] = {"www.example.test. 60 IN A 192.0.2.1", NULL};
	msg_t m = reply(&b, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &b.q, m.wire, m.len, T0), 0);
	free(m.wire);
	uint64_t t = T0 + 100 * S;
	assert_int_equal(cache_insert_servfail(c, b.pkt, b.len, &b.q, t), 0);
	assert_int_equal(look(c, &b, t + 1 * S, false, &p), CACHE_STALE);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &b, t + CACHE_SERVFAIL_TTL * S, false, &p), CACHE_MISS);
	cache_free(c);
}

static void test_prefetch_in_last_tenth_and_retried(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	query_t a = ask_a("pop.example.test.");
	const char *const an[] = {"pop.example.test. 200 IN A 192.0.2.1", NULL};
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), 0);
	/* the expected result of a lookup at T0 + ms, one after the other */
	const struct {
		uint64_t ms;
		bool stale_ok;
		int want;
	} steps[] = {
	        {179 * S, false, CACHE_HIT},
	        {181 * S, true, CACHE_HIT}, /* a stale-mode lookup has no client: no refresh */
	        {181 * S, false, CACHE_HIT_PREFETCH},
	        {182 * S, false, CACHE_HIT},
	        /* once: an answer the cache did not keep (REFUSED, TTL 0) is not asked for again */
	        {(181 + 2 * CACHE_PREFETCH_RETRY) * S, false, CACHE_HIT},
	};
	ldns_pkt *p;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		assert_int_equal(look(c, &a, T0 + steps[i].ms, steps[i].stale_ok, &p),
		                 steps[i].want);
		ldns_pkt_free(p);
	}
	/* every upstream failed the refresh: asked again CACHE_PREFETCH_RETRY s later */
	uint64_t t = T0 + 185 * S;
	assert_int_equal(cache_insert_servfail(c, a.pkt, a.len, &a.q, t), 0);
	assert_int_equal(look(c, &a, t + CACHE_PREFETCH_RETRY * S - 1, false, &p), CACHE_HIT);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &a, t + CACHE_PREFETCH_RETRY * S, false, &p), CACHE_HIT_PREFETCH);
	ldns_pkt_free(p);
	/* the refresh could not start (the forwarder full): the same */
	t += CACHE_PREFETCH_RETRY * S;
	cache_prefetch_again(c, &a.q, t);
	assert_int_equal(look(c, &a, t + CACHE_PREFETCH_RETRY * S - 1, false, &p), CACHE_HIT);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &a, t + CACHE_PREFETCH_RETRY * S, false, &p), CACHE_HIT_PREFETCH);
	ldns_pkt_free(p);
	/* the refreshed answer may prefetch again, in its own last tenth */
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0 + 197 * S), 0);
	assert_int_equal(look(c, &a, T0 + 377 * S, false, &p), CACHE_HIT);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &a, T0 + 378 * S, false, &p), CACHE_HIT_PREFETCH);
	ldns_pkt_free(p);
	cache_stats_t s;
	cache_stats(c, &s);
	assert_int_equal(s.prefetches, 4);
	assert_int_equal(s.entries, 1);
	free(m.wire);
	cache_free(c);
}

static void test_bytes_stay_within_max_and_clock_keeps_the_used(void **st)
{
	(void)st;
	size_t max = CACHE_MIN_BYTES;
	cache_t *c = mk(max);
	query_t hot = ask_a("hot.example.test.");
	const char *const hot_an[] = {"hot.example.test. 300 IN A 192.0.2.7", NULL};
	msg_t hm = reply(&hot, LDNS_RCODE_NOERROR, hot_an, NULL, false);
	assert_int_equal(cache_insert(c, &hot.q, hm.wire, hm.len, T0), 0);
	free(hm.wire);
	cache_stats_t s;
	for (int i = 0; i < 20000; i++) {
		store_a(c, "n", i, 1);
		ldns_pkt *p;
		if (i % 50 == 0) {
			assert_int_equal(look(c, &hot, T0, false, &p), CACHE_HIT);
			ldns_pkt_free(p);
		}
		cache_stats(c, &s);
		assert_true(s.bytes <= max);
	}
	assert_true(s.evictions > 10000);
	assert_true(s.entries > 100);
	/* the first ones are gone, the recent and the hot one are there */
	query_t first = ask_a("n0.example.test."), last = ask_a("n19999.example.test.");
	ldns_pkt *p;
	assert_int_equal(look(c, &first, T0, false, &p), CACHE_MISS);
	assert_int_equal(look(c, &last, T0, false, &p), CACHE_HIT);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &hot, T0, false, &p), CACHE_HIT);
	ldns_pkt_free(p);
	cache_free(c);
	cache_conf_t small = {.max_bytes = CACHE_MIN_BYTES - 1};
	assert_int_equal(cache_create(&c, &small), -EINVAL);
}

/* Every entry used between two inserts: the hand gives each its second chance and
 * then evicts, rather than stopping at the entry just stored (it used to, and the
 * cache grew without bound). */
static void test_bytes_stay_within_max_when_every_entry_is_used(void **st)
{
	(void)st;
	size_t max = CACHE_MIN_BYTES;
	cache_t *c = mk(max);
	enum { N = 2000 };
	static query_t qs[N];
	cache_stats_t s;
	for (int i = 0; i < N; i++) {
		qs[i] = store_a(c, "u", i, 1);
		for (int j = 0; j <= i; j++) { /* every entry still there is used */
			uint8_t buf[512];
			size_t len;
			cache_lookup(c, qs[j].pkt, &qs[j].q, 1232, T0, false, buf, sizeof(buf),
			             &len);
		}
		cache_stats(c, &s);
		assert_true(s.bytes <= max);
	}
	assert_true(s.evictions > 0);
	cache_free(c);
}

/* A SERVFAIL is kept for its few seconds only: never answered stale afterwards, even
 * when the client response timer asks for anything the cache has. */
static void test_servfail_is_never_stale(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20); /* stale_ttl one day */
	query_t a = ask_a("down.example.test.");
	assert_int_equal(cache_insert_servfail(c, a.pkt, a.len, &a.q, T0), 0);
	ldns_pkt *p;
	assert_int_equal(look(c, &a, T0 + (CACHE_SERVFAIL_TTL + 1) * S, true, &p), CACHE_MISS);
	assert_int_equal(look(c, &a, T0 + 3600 * S, true, &p), CACHE_MISS);
	cache_stats_t s;
	cache_stats(c, &s);
	assert_int_equal(s.entries, 0);
	cache_free(c);
}

/* RFC 2308 with a CNAME: the negative part lives for min(SOA TTL, SOA MINIMUM) and the
 * chain's records no longer than their own TTLs. */
static void test_negative_after_a_cname(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	/* NODATA at the end of a chain: NOERROR, a CNAME, the SOA (TTL 3600, MINIMUM 60) */
	query_t a = ask("alias.example.test.", LDNS_RR_TYPE_AAAA, 1, true, false, false);
	const char *const an[] = {"alias.example.test. 3600 IN CNAME end.example.test.", NULL};
	const char *const soa[] = {"example.test. 3600 IN SOA ns.example.test. h.example.test. "
	                           "1 3600 600 86400 60",
	                           NULL};
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, soa, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), 0);
	free(m.wire);
	ldns_pkt *p;
	assert_int_equal(look(c, &a, T0 + 30 * S, false, &p), CACHE_HIT);
	assert_int_equal(ttl_of(p, LDNS_SECTION_AUTHORITY, 0), 30);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &a, T0 + 60 * S, false, &p), CACHE_MISS);
	/* NXDOMAIN at the end of a chain whose CNAME has TTL 10, SOA MINIMUM 3600 */
	query_t b = ask_a("short.example.test.");
	const char *const an2[] = {"short.example.test. 10 IN CNAME gone.example.test.", NULL};
	const char *const soa2[] = {"example.test. 3600 IN SOA ns.example.test. h.example.test. "
	                            "1 3600 600 86400 3600",
	                            NULL};
	m = reply(&b, LDNS_RCODE_NXDOMAIN, an2, soa2, false);
	assert_int_equal(cache_insert(c, &b.q, m.wire, m.len, T0), 0);
	free(m.wire);
	assert_int_equal(look(c, &b, T0 + 9 * S, false, &p), CACHE_HIT);
	assert_int_equal(ttl_of(p, LDNS_SECTION_ANSWER, 0), 1);
	ldns_pkt_free(p);
	assert_int_equal(look(c, &b, T0 + 10 * S, false, &p), CACHE_MISS);
	/* a chain without its end and without SOA stays a positive answer */
	query_t d = ask_a("out.example.test.");
	const char *const an3[] = {"out.example.test. 300 IN CNAME www.elsewhere.test.", NULL};
	m = reply(&d, LDNS_RCODE_NOERROR, an3, NULL, false);
	assert_int_equal(cache_insert(c, &d.q, m.wire, m.len, T0), 0);
	free(m.wire);
	assert_int_equal(look(c, &d, T0 + 299 * S, false, &p), CACHE_HIT_PREFETCH);
	ldns_pkt_free(p);
	cache_free(c);
}

/* The first asker's EDNS options (here a DNS COOKIE the upstream echoed) are not kept:
 * the next client gets the OPT record without them. AD goes only to a client that set
 * AD or DO (RFC 6840 section 5.8). */
static void test_askers_options_and_ad_are_not_shared(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	query_t a = ask_a("www.example.test.");
	const char *const an[] = {"www.example.test. 300 IN A 192.0.2.1", NULL};
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, false);
	ldns_pkt *up = NULL;
	assert_int_equal(ldns_wire2pkt(&up, m.wire, m.len), LDNS_STATUS_OK);
	free(m.wire);
	/* COOKIE (option 10): the client's 8 bytes and the server's 8 */
	ldns_pkt_set_edns_data(up,
	                       ldns_rdf_new_frm_str(LDNS_RDF_TYPE_HEX,
	                                            "000a00100102030405060708a1a2a3a4a5a6a7a8"));
	ldns_pkt_set_ad(up, true);
	assert_int_equal(ldns_pkt2wire(&m.wire, up, &m.len), LDNS_STATUS_OK);
	ldns_pkt_free(up);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), 0);
	free(m.wire);
	query_t b = ask("www.example.test.", LDNS_RR_TYPE_A, 0x5555, true, false, false);
	uint8_t buf[512];
	size_t len = 0;
	assert_int_equal(cache_lookup(c, b.pkt, &b.q, 1232, T0, false, buf, sizeof(buf), &len),
	                 CACHE_HIT);
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, buf, len), LDNS_STATUS_OK);
	assert_true(ldns_pkt_edns(p));
	assert_int_equal(ldns_pkt_ancount(p), 1);
	ldns_rdf *opts = ldns_pkt_edns_data(p);
	assert_true(!opts || ldns_rdf_size(opts) == 0); /* no cookie of the first asker */
	assert_false(ldns_pkt_ad(p));                   /* b asked with neither AD nor DO */
	ldns_pkt_free(p);
	buf[0] = 0;
	b.pkt[3] |= 0x20; /* the same client, now with AD */
	assert_int_equal(cache_lookup(c, b.pkt, &b.q, 1232, T0, false, buf, sizeof(buf), &len),
	                 CACHE_HIT);
	assert_true(buf[3] & 0x20);
	cache_free(c);
}

/* The shards' tables start small and double as entries come: every one of thousands of
 * names is still found after the growth, and the byte bound holds throughout. */
static void test_every_entry_is_found_as_the_tables_grow(void **st)
{
	(void)st;
	size_t max = 16u << 20;
	cache_t *c = mk(max);
	enum { N = 5000 };
	for (int i = 0; i < N; i++)
		store_a(c, "g", i, i % 250 + 1);
	cache_stats_t s;
	cache_stats(c, &s);
	assert_int_equal(s.entries, N);
	assert_int_equal(s.evictions, 0);
	assert_true(s.bytes <= max);
	for (int i = 0; i < N; i++) {
		char name[64];
		snprintf(name, sizeof(name), "G%d.Example.TEST.", i); /* any case */
		query_t a = ask_a(name);
		ldns_pkt *p;
		assert_int_equal(look(c, &a, T0 + S, false, &p), CACHE_HIT);
		ldns_rr_list *an = ldns_pkt_answer(p);
		assert_int_equal(ldns_rr_list_rr_count(an), 1);
		char *txt = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(an, 0), 0));
		char want[32];
		snprintf(want, sizeof(want), "192.0.2.%d", i % 250 + 1);
		assert_string_equal(txt, want);
		free(txt);
		ldns_pkt_free(p);
	}
	query_t none = ask_a("g5000.example.test.");
	ldns_pkt *p;
	assert_int_equal(look(c, &none, T0 + S, false, &p), CACHE_MISS);
	cache_free(c);
}

static void test_orgs_never_share_an_answer_nor_a_flight(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	query_t a = ask_a("www.example.test."), b = a;
	a.q.scope = 0x18, b.q.scope = 0x19;
	const char *const an[] = {"www.example.test. 60 IN A 192.0.2.1", NULL};
	msg_t m = reply(&a, LDNS_RCODE_NOERROR, an, NULL, false);
	assert_int_equal(cache_insert(c, &a.q, m.wire, m.len, T0), 0);
	free(m.wire);
	ldns_pkt *p;
	/* org 0x19 asks 3 s after org 0x18: a TTL of 57 would tell it who asked, and when */
	assert_int_equal(look(c, &b, T0 + 3 * S, false, &p), CACHE_MISS);
	assert_int_equal(look(c, &a, T0 + 3 * S, false, &p), CACHE_HIT);
	assert_int_equal(ttl_of(p, LDNS_SECTION_ANSWER, 0), 57);
	ldns_pkt_free(p);
	cache_waiter_t w[2];
	memset(w, 0, sizeof(w));
	assert_true(cache_flight_join(c, &a.q, &w[0]));
	assert_true(cache_flight_join(c, &b.q, &w[1])); /* its own question upstream */
	cache_flight_done(c, &w[0], NULL, NULL);
	cache_flight_done(c, &w[1], NULL, NULL);
	cache_free(c);
}

static int woken;
static cache_waiter_t *woke[8];

static void wake(cache_waiter_t *w, void *ctx)
{
	assert_ptr_equal(ctx, &woken);
	woke[woken++] = w;
}

static void test_identical_questions_in_flight_have_one_owner(void **st)
{
	(void)st;
	cache_t *c = mk(1 << 20);
	query_t a = ask_a("new.example.test.");
	query_t upper = ask("NEW.example.TEST.", LDNS_RR_TYPE_A, 9, true, false, false);
	query_t dnssec = ask("new.example.test.", LDNS_RR_TYPE_A, 9, true, true, false);
	cache_waiter_t w[5];
	memset(w, 0, sizeof(w));
	assert_true(cache_flight_join(c, &a.q, &w[0]));
	assert_false(cache_flight_join(c, &upper.q, &w[1]));
	assert_false(cache_flight_join(c, &a.q, &w[2]));
	assert_false(cache_flight_join(c, &a.q, &w[3]));
	assert_true(cache_flight_join(c, &dnssec.q, &w[4])); /* another key */
	assert_true(cache_flight_leave(c, &w[2]));           /* its timer ran out */
	woken = 0;
	cache_flight_done(c, &w[0], wake, &woken);
	assert_int_equal(woken, 2);
	assert_true((woke[0] == &w[1] && woke[1] == &w[3]) ||
	            (woke[0] == &w[3] && woke[1] == &w[1]));
	assert_false(cache_flight_leave(c, &w[1]));     /* already handed over */
	assert_true(cache_flight_join(c, &a.q, &w[2])); /* a new flight */
	woken = 0;
	cache_flight_done(c, &w[2], wake, &woken);
	cache_flight_done(c, &w[4], wake, &woken);
	assert_int_equal(woken, 0);
	cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_hit_has_askers_id_case_and_counted_down_ttls),
	        cmocka_unit_test(test_positive_ttl_clamped_by_max_ttl),
	        cmocka_unit_test(test_negative_lives_for_soa_minimum),
	        cmocka_unit_test(test_negative_clamped_by_its_max),
	        cmocka_unit_test(test_never_stored),
	        cmocka_unit_test(test_do_cd_and_edns_kept_apart),
	        cmocka_unit_test(test_larger_than_client_takes_is_tc),
	        cmocka_unit_test(test_stale_answers_have_ttl_30_within_the_window),
	        cmocka_unit_test(test_servfail_from_every_upstream),
	        cmocka_unit_test(test_prefetch_in_last_tenth_and_retried),
	        cmocka_unit_test(test_bytes_stay_within_max_and_clock_keeps_the_used),
	        cmocka_unit_test(test_every_entry_is_found_as_the_tables_grow),
	        cmocka_unit_test(test_bytes_stay_within_max_when_every_entry_is_used),
	        cmocka_unit_test(test_servfail_is_never_stale),
	        cmocka_unit_test(test_negative_after_a_cname),
	        cmocka_unit_test(test_askers_options_and_ad_are_not_shared),
	        cmocka_unit_test(test_identical_questions_in_flight_have_one_owner),
	        cmocka_unit_test(test_orgs_never_share_an_answer_nor_a_flight),
	};
	return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
