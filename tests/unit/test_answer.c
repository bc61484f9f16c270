/* test_answer.c — every name form answered from a small two-org registry, with ldns
 * decoding the responses: NXDOMAIN vs NODATA with the SOA, org isolation, TC and TCP,
 * TXT splitting, shuffling, nearest order, PTR, EDNS. */
#include "testreg.h"

#include "answer.h"
#include "wire.h"

#define NET_A 0x18
#define NET_B 0x19

typedef struct {
	char *dir;
	reg_t *reg;
	reg_txn_t *txn;
	ans_conf_t conf;
	ans_ctx_t ctx;
} fx_t;

static char *data(void)
{
	static char buf[1 << 17];
	size_t n = 0;
#define ADD(...) n += (size_t)snprintf(buf + n, sizeof(buf) - n, __VA_ARGS__)
	ADD("%s%s", ORG_A, ORG_B);
	ADD(MACHINE("00000000000001", "alpha", "web", "ord", "fdaa:0:18:1:1:0:1:2", "started",
	            "app", ",\"metadata\":{\"role\":\"primary\"}"));
	ADD(MACHINE("00000000000002", "alpha", "web", "iad", "fdaa:0:18:1:1:0:2:2", "started",
	            "worker", ""));
	ADD(MACHINE("00000000000003", "alpha", "web", "ord", "fdaa:0:18:1:1:0:3:2", "stopped",
	            "app", ""));
	ADD(MACHINE("00000000000004", "alpha", "gone", "ord", "fdaa:0:18:1:1:0:4:2", "stopped",
	            "app", ""));
	ADD(MACHINE("0000000000000b", "beta", "web", "ord", "fdaa:0:19:1:1:0:b:2", "started", "app",
	            ""));
	ADD(MACHINE("aa000000000003", "alpha", "geo", "ord", "fdaa:0:18:3:1:0:3:2", "started",
	            "app", ""));
	ADD(MACHINE("aa000000000001", "alpha", "geo", "ord", "fdaa:0:18:3:1:0:1:2", "started",
	            "app", ""));
	ADD(MACHINE("aa000000000002", "alpha", "geo", "iad", "fdaa:0:18:3:1:0:2:2", "started",
	            "app",
	            ",\"metadata\":{\"fly_process_group\":\"app\",\"fly_release_id\":"
	            "\"01HZRELEASE\",\"version\":\"v1.2.3\"}"));
	ADD(MACHINE("aa000000000006", "alpha", "geo", "iad", "fdaa:0:18:3:1:0:6:2", "started",
	            "app", ",\"metadata\":{\"fly_process_group\":\"worker\"}"));
	/* hc: health checks of every kind (1, 2, 4 healthy; 3, 5, 6 critical) */
	static const char *const hc[][4] = {
	        {"ord", "app", ",\"metadata\":{\"tier\":\"gold\"}",
	         "[{\"name\":\"http\",\"status\":\"passing\",\"output\":\"200 OK\"}]"},
	        {"ord", "app", ",\"metadata\":{\"tier\":\"gold\"}",
	         "[{\"name\":\"http\",\"status\":\"passing\"},{\"name\":\"disk\","
	         "\"status\":\"warning\"}]"},
	        {"ord", "app", ",\"metadata\":{\"tier\":\"gold\"}",
	         "[{\"name\":\"http\",\"status\":\"passing\"},{\"name\":\"tcp\","
	         "\"status\":\"critical\"}]"},
	        {"iad", "worker", "", NULL},
	        {"iad", "worker", "", "[{\"name\":\"http\",\"status\":\"critical\"}]"},
	        {"ams", "app", "", "[{\"name\":\"http\",\"status\":\"critical\"}]"},
	};
	for (int i = 0; i < 6; i++)
		ADD("{\"kind\":\"machine\",\"id\":\"d000000000000%d\",\"org\":\"alpha\","
		    "\"app\":\"hc\",\"region\":\"%s\",\"private_ip\":\"fdaa:0:18:1:5:0:%d:2\","
		    "\"process_group\":\"%s\"%s%s%s}\n",
		    i + 1, hc[i][0], i + 1, hc[i][1], hc[i][2], hc[i][3] ? ",\"checks\":" : "",
		    hc[i][3] ? hc[i][3] : "");
	ADD(MACHINE("cc000000000001", "alpha", "web", "ord", "fdaa:0:18:1:1:0:c1:2", "started",
	            "app", ",\"dns\":{\"skip_registration\":true}"));
	ADD(MACHINE("cc000000000002", "alpha", "hidden", "ord", "fdaa:0:18:1:1:0:c2:2", "stopped",
	            "app", ",\"dns\":{\"skip_registration\":true}"));
	ADD(MACHINE("aa000000000004", "alpha", "geo", "ams", "fdaa:0:18:3:1:0:4:2", "started",
	            "app", ""));
	ADD(MACHINE("aa000000000005", "alpha", "geo", "syd", "fdaa:0:18:3:1:0:5:2", "started",
	            "app", ""));
	for (int i = 0; i < 200; i++)
		ADD("{\"kind\":\"machine\",\"id\":\"%014x\",\"org\":\"alpha\",\"app\":\"big\","
		    "\"region\":\"ord\",\"private_ip\":\"fdaa:0:18:4:1:0:%x:2\"}\n",
		    0x100000 + i, i + 1);
	ADD("{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"laptop\",\"ip\":\"fdaa:0:18:2::2\","
	    "\"region\":\"ams\"}\n");
	ADD("{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"interactive-7f3a\","
	    "\"ip\":\"fdaa:0:18:2::7\",\"region\":\"ord\"}\n");
	ADD("{\"kind\":\"peer\",\"org\":\"beta\",\"name\":\"phone\",\"ip\":\"fdaa:0:19:2::2\","
	    "\"region\":\"ord\"}\n");
	ADD("{\"kind\":\"flycast\",\"org\":\"alpha\",\"app\":\"web\",\"ip\":\"fdaa:0:18:0:1::3\"}"
	    "\n");
	return buf;
}

static int setup(void **state)
{
	fx_t *fx = calloc(1, sizeof(*fx));
	fx->reg = reg_fixture(&fx->dir, data());
	fx->conf = (ans_conf_t){.ttl = 5, .nsid = "test-1", .nsid_len = 6};
	org_acl_default(&fx->conf.acl);
	assert_int_equal(reg_txn_begin(fx->reg, false, &fx->txn), 0);
	fx->ctx = (ans_ctx_t){.conf = &fx->conf,
	                      .txn = fx->txn,
	                      .has_default = true,
	                      .default_net = NET_A,
	                      .rng = 42};
	fx->ctx.cand = calloc(ANS_NEAREST_MAX, sizeof(*fx->ctx.cand));
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	fx_t *fx = *state;
	reg_txn_abort(fx->txn);
	reg_close(fx->reg);
	tmp_free(fx->dir);
	free(fx->ctx.cand);
	free(fx);
	return 0;
}

typedef struct {
	const char *src, *dst;
	bool tcp;
	uint16_t edns;
	ldns_rr_class cls;
} how_t;

static ldns_pkt *ask_how(fx_t *fx, const char *name, ldns_rr_type type, how_t h)
{
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&q, name, type,
	                                            h.cls ? h.cls : LDNS_RR_CLASS_IN, LDNS_RD),
	                 LDNS_STATUS_OK);
	ldns_pkt_set_id(q, 7);
	if (h.edns)
		ldns_pkt_set_edns_udp_size(q, h.edns);
	uint8_t buf[512], out[65535];
	size_t len = pkt_wire(q, buf), outlen = 0;
	ans_client_t cl = {.tcp = h.tcp};
	assert_int_equal(org_parse_addr(h.src ? h.src : "::1", cl.src), 0);
	assert_int_equal(org_parse_addr(h.dst ? h.dst : "::1", cl.dst), 0);
	ans_action_t act = ans_process(&fx->ctx, &cl, buf, len, out, sizeof(out), &outlen);
	if (act != ANS_REPLY)
		return NULL;
	assert_true(h.tcp || outlen <= (h.edns ? (h.edns > 1232 ? 1232 : h.edns) : 512));
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, out, outlen), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_id(p), 7);
	return p;
}

static ldns_pkt *ask(fx_t *fx, const char *name, ldns_rr_type type)
{
	return ask_how(fx, name, type, (how_t){0});
}

/* The answer's AAAA addresses, sorted, as one comma-separated string. */
static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *addrs(ldns_pkt *p, bool sort)
{
	static char out[8192];
	char *list[512];
	size_t n = 0;
	ldns_rr_list *an = ldns_pkt_answer(p);
	for (size_t i = 0; i < ldns_rr_list_rr_count(an) && n < 512; i++) {
		ldns_rr *rr = ldns_rr_list_rr(an, i);
		if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_AAAA)
			list[n++] = ldns_rdf2str(ldns_rr_rdf(rr, 0));
	}
	if (sort)
		qsort(list, n, sizeof(list[0]), cmpstr);
	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(out, ",");
		strcat(out, list[i]);
		free(list[i]);
	}
	return out;
}

/* The TXT answer's text, character-strings concatenated. */
static char *txt(ldns_pkt *p)
{
	static char out[65536];
	out[0] = 0;
	size_t n = 0;
	ldns_rr_list *an = ldns_pkt_answer(p);
	assert_int_equal(ldns_rr_list_rr_count(an), 1);
	ldns_rr *rr = ldns_rr_list_rr(an, 0);
	for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
		ldns_rdf *rd = ldns_rr_rdf(rr, i);
		size_t l = ldns_rdf_data(rd)[0];
		assert_true(l <= 255);
		memcpy(out + n, ldns_rdf_data(rd) + 1, l);
		n += l;
	}
	out[n] = 0;
	return out;
}

static void assert_rcode(ldns_pkt *p, ldns_pkt_rcode rcode, size_t answers)
{
	assert_non_null(p);
	assert_int_equal(ldns_pkt_get_rcode(p), rcode);
	assert_int_equal(ldns_pkt_ancount(p), answers);
}

/* NXDOMAIN or NODATA: the zone's SOA in authority with the negative TTL. */
static void assert_negative(ldns_pkt *p, ldns_pkt_rcode rcode, const char *apex)
{
	assert_rcode(p, rcode, 0);
	assert_true(ldns_pkt_aa(p));
	assert_int_equal(ldns_pkt_nscount(p), 1);
	ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(p), 0);
	assert_int_equal(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
	assert_int_equal(ldns_rr_ttl(soa), 5);
	char *owner = ldns_rdf2str(ldns_rr_owner(soa));
	assert_string_equal(owner, apex);
	free(owner);
	ldns_pkt_free(p);
}

static void expect_addrs(fx_t *fx, const char *name, const char *want)
{
	ldns_pkt *p = ask(fx, name, LDNS_RR_TYPE_AAAA);
	assert_rcode(p, LDNS_RCODE_NOERROR, ldns_pkt_ancount(p));
	assert_true(ldns_pkt_aa(p));
	assert_string_equal(addrs(p, true), want);
	ldns_pkt_free(p);
}

static void expect_txt(fx_t *fx, const char *name, const char *want)
{
	ldns_pkt *p = ask(fx, name, LDNS_RR_TYPE_TXT);
	assert_rcode(p, LDNS_RCODE_NOERROR, 1);
	assert_string_equal(txt(p), want);
	ldns_pkt_free(p);
}

static void test_app_answers_its_started_machines(void **state)
{
	expect_addrs(*state, "web.internal.", "fdaa:0:18:1:1:0:1:2,fdaa:0:18:1:1:0:2:2");
	expect_addrs(*state, "global.web.internal.", "fdaa:0:18:1:1:0:1:2,fdaa:0:18:1:1:0:2:2");
	expect_addrs(*state, "WEB.Internal.", "fdaa:0:18:1:1:0:1:2,fdaa:0:18:1:1:0:2:2");
}

static void test_owner_name_keeps_the_question_case(void **state)
{
	ldns_pkt *p = ask(*state, "WeB.InTeRnAl.", LDNS_RR_TYPE_AAAA);
	char *owner = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(p), 0)));
	assert_string_equal(owner, "WeB.InTeRnAl.");
	free(owner);
	ldns_pkt_free(p);
}

static void test_region_group_vm_metadata_forms(void **state)
{
	expect_addrs(*state, "ord.web.internal.", "fdaa:0:18:1:1:0:1:2");
	expect_addrs(*state, "iad.web.internal.", "fdaa:0:18:1:1:0:2:2");
	expect_addrs(*state, "worker.process.web.internal.", "fdaa:0:18:1:1:0:2:2");
	expect_addrs(*state, "00000000000001.vm.web.internal.", "fdaa:0:18:1:1:0:1:2");
	expect_addrs(*state, "primary.role.kv._metadata.web.internal.", "fdaa:0:18:1:1:0:1:2");
	expect_addrs(*state, "laptop._peer.internal.", "fdaa:0:18:2::2");
	expect_addrs(*state, "web.flycast.", "fdaa:0:18:0:1::3");
}

static void test_txt_forms(void **state)
{
	expect_txt(*state, "vms.web.internal.", "00000000000001 ord,00000000000002 iad");
	expect_txt(*state, "regions.geo.internal.", "ams,iad,ord,syd");
	expect_txt(*state, "_apps.internal.", "big,geo,hc,web");
	expect_txt(*state, "_peer.internal.", "laptop");
}

static void test_instances_is_split_into_255_byte_strings(void **state)
{
	ldns_pkt *p =
	        ask_how(*state, "_instances.internal.", LDNS_RR_TYPE_TXT, (how_t){.tcp = true});
	assert_rcode(p, LDNS_RCODE_NOERROR, 1);
	ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
	assert_true(ldns_rr_rd_count(rr) > 10);
	const char *t = txt(p);
	assert_non_null(
	        strstr(t, "instance=00000000000001,app=web,ip=fdaa:0:18:1:1:0:1:2,region=ord;"));
	assert_null(strstr(t, "00000000000003")); /* stopped */
	assert_null(strstr(t, "fdaa:0:19"));      /* another org */
	ldns_pkt_free(p);
	/* over UDP the record cannot fit whole: TC, no partial TXT */
	p = ask(*state, "_instances.internal.", LDNS_RR_TYPE_TXT);
	assert_rcode(p, LDNS_RCODE_NOERROR, 0);
	assert_true(ldns_pkt_tc(p));
	ldns_pkt_free(p);
}

static void test_nodata_has_soa(void **state)
{
	assert_negative(ask(*state, "web.internal.", LDNS_RR_TYPE_A), LDNS_RCODE_NOERROR,
	                "internal.");
	assert_negative(ask(*state, "vms.web.internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NOERROR,
	                "internal.");
	assert_negative(ask(*state, "web.internal.", LDNS_RR_TYPE_TXT), LDNS_RCODE_NOERROR,
	                "internal.");
	assert_negative(ask(*state, "vm.web.internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NOERROR,
	                "internal.");
	assert_negative(ask(*state, "internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NOERROR,
	                "internal.");
}

static void test_nxdomain_has_soa(void **state)
{
	const char *nx[] = {"nope.internal.",
	                    "hidden.internal.",
	                    "syd.web.internal.",
	                    "00000000000003.vm.web.internal.",
	                    "top0.nearest.of.web.internal.",
	                    "nobody._peer.internal.",
	                    "x.y.web.internal.",
	                    "vm.gone.internal.",
	                    "secondary.role.kv._metadata.web.internal."};
	for (size_t i = 0; i < sizeof(nx) / sizeof(nx[0]); i++)
		assert_negative(ask(*state, nx[i], LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN,
		                "internal.");
	assert_negative(ask(*state, "api.flycast.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN,
	                "flycast.");
}

static void test_apex_soa_and_ns(void **state)
{
	ldns_pkt *p = ask(*state, "internal.", LDNS_RR_TYPE_SOA);
	assert_rcode(p, LDNS_RCODE_NOERROR, 1);
	char *s = ldns_rr2str(ldns_rr_list_rr(ldns_pkt_answer(p), 0));
	/* the regions were the first write, alpha's records the second */
	assert_non_null(strstr(s, "SOA\t_ns.internal. hostmaster.internal. 2 3600 600 86400 5"));
	free(s);
	ldns_pkt_free(p);
	p = ask(*state, "internal.", LDNS_RR_TYPE_NS);
	assert_rcode(p, LDNS_RCODE_NOERROR, 1);
	s = ldns_rr2str(ldns_rr_list_rr(ldns_pkt_answer(p), 0));
	assert_non_null(strstr(s, "NS\t_ns.internal."));
	free(s);
	ldns_pkt_free(p);
}

static void test_orgs_never_see_each_other(void **state)
{
	fx_t *fx = *state;
	how_t b = {.src = "fdaa:0:19:1:1:0:b:2", .dst = "fdaa::3"};
	ldns_pkt *p = ask_how(fx, "web.internal.", LDNS_RR_TYPE_AAAA, b);
	assert_string_equal(addrs(p, true), "fdaa:0:19:1:1:0:b:2");
	ldns_pkt_free(p);
	p = ask_how(fx, "_apps.internal.", LDNS_RR_TYPE_TXT, b);
	assert_string_equal(txt(p), "web");
	ldns_pkt_free(p);
	p = ask_how(fx, "_peer.internal.", LDNS_RR_TYPE_TXT, b);
	assert_string_equal(txt(p), "phone");
	ldns_pkt_free(p);
	assert_negative(ask_how(fx, "geo.internal.", LDNS_RR_TYPE_AAAA, b), LDNS_RCODE_NXDOMAIN,
	                "internal.");
	assert_negative(ask_how(fx, "laptop._peer.internal.", LDNS_RR_TYPE_AAAA, b),
	                LDNS_RCODE_NXDOMAIN, "internal.");
	assert_negative(ask_how(fx, "web.flycast.", LDNS_RR_TYPE_AAAA, b), LDNS_RCODE_NXDOMAIN,
	                "flycast.");
	/* a 6PN source beats --default-org */
	p = ask_how(fx, "_apps.internal.", LDNS_RR_TYPE_TXT,
	            (how_t){.src = "fdaa:0:19:9::9", .dst = "::1"});
	assert_string_equal(txt(p), "web");
	ldns_pkt_free(p);
	/* an org with no records at all is empty, not an error */
	assert_negative(ask_how(fx, "web.internal.", LDNS_RR_TYPE_AAAA,
	                        (how_t){.src = "fdaa:0:77::5", .dst = "fdaa::3"}),
	                LDNS_RCODE_NXDOMAIN, "internal.");
}

static void test_other_orgs_resolver_address_is_refused(void **state)
{
	ldns_pkt *p = ask_how(*state, "web.internal.", LDNS_RR_TYPE_AAAA,
	                      (how_t){.src = "fdaa:0:19:1:1:0:b:2", .dst = "fdaa:0:18::3"});
	assert_rcode(p, LDNS_RCODE_REFUSED, 0);
	assert_false(ldns_pkt_aa(p));
	ldns_pkt_free(p);
}

static void test_ptr_within_the_org_only(void **state)
{
	fx_t *fx = *state;
	const char *rev =
	        "2.0.0.0.1.0.0.0.0.0.0.0.1.0.0.0.1.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.";
	ldns_pkt *p = ask(fx, rev, LDNS_RR_TYPE_PTR);
	assert_rcode(p, LDNS_RCODE_NOERROR, 1);
	char *t = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 0));
	assert_string_equal(t, "00000000000001.vm.web.internal.");
	free(t);
	ldns_pkt_free(p);
	p = ask(fx, "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.",
	        LDNS_RR_TYPE_PTR);
	t = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 0));
	assert_string_equal(t, "laptop._peer.internal.");
	free(t);
	ldns_pkt_free(p);
	assert_negative(ask_how(fx, rev, LDNS_RR_TYPE_PTR,
	                        (how_t){.src = "fdaa:0:19:1:1:0:b:2", .dst = "fdaa::3"}),
	                LDNS_RCODE_NXDOMAIN, "a.a.d.f.ip6.arpa.");
	/* a stopped Machine has no name */
	assert_negative(
	        ask(fx, "2.0.0.0.3.0.0.0.0.0.0.0.1.0.0.0.1.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.",
	            LDNS_RR_TYPE_PTR),
	        LDNS_RCODE_NXDOMAIN, "a.a.d.f.ip6.arpa.");
}

/* RFC 8020: a shorter reverse name above an address of the org is NODATA, never
 * NXDOMAIN; one with nothing of the org below it is NXDOMAIN, whatever other orgs have. */
static void test_reverse_prefixes_are_empty_non_terminals_of_the_org(void **state)
{
	fx_t *fx = *state;
	/* fdaa:0:18:1:1:0:1:2 (Machine 1 of alpha), every prefix from 27 nibbles to 1 */
	const char *full =
	        "2.0.0.0.1.0.0.0.0.0.0.0.1.0.0.0.1.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.";
	for (size_t skip = 2; skip <= 2 * 27; skip += 2) {
		assert_negative(ask(fx, full + skip, LDNS_RR_TYPE_PTR), LDNS_RCODE_NOERROR,
		                "a.a.d.f.ip6.arpa.");
		ldns_pkt *p = ask(fx, full + skip, LDNS_RR_TYPE_ANY);
		assert_rcode(p, LDNS_RCODE_NOERROR, 0);
		ldns_pkt_free(p);
	}
	/* the peer laptop fdaa:0:18:2::2 */
	assert_negative(ask(fx, "2.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.", LDNS_RR_TYPE_PTR),
	                LDNS_RCODE_NOERROR, "a.a.d.f.ip6.arpa.");
	/* nothing of alpha below: a sibling nibble, a stopped Machine's /112 */
	const char *nx[] = {
	        "9.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.",
	        "3.0.0.0.0.0.0.0.1.0.0.0.1.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.",
	        "1.a.a.d.f.ip6.arpa.",
	};
	for (size_t i = 0; i < sizeof(nx) / sizeof(nx[0]); i++)
		assert_negative(ask(fx, nx[i], LDNS_RR_TYPE_PTR), LDNS_RCODE_NXDOMAIN,
		                "a.a.d.f.ip6.arpa.");
	/* beta's network fdaa:0:19: NXDOMAIN for alpha, NODATA for beta */
	const char *beta = "9.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.";
	assert_negative(ask(fx, beta, LDNS_RR_TYPE_PTR), LDNS_RCODE_NXDOMAIN, "a.a.d.f.ip6.arpa.");
	how_t b = {.src = "fdaa:0:19:1:1:0:b:2", .dst = "fdaa::3"};
	assert_negative(ask_how(fx, beta, LDNS_RR_TYPE_PTR, b), LDNS_RCODE_NOERROR,
	                "a.a.d.f.ip6.arpa.");
	assert_negative(ask_how(fx, "8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.", LDNS_RR_TYPE_PTR, b),
	                LDNS_RCODE_NXDOMAIN, "a.a.d.f.ip6.arpa.");
	/* an org with nothing at all: every prefix is NXDOMAIN */
	how_t empty = {.src = "fdaa:0:77:1::2", .dst = "fdaa::3"};
	assert_negative(ask_how(fx, "0.a.a.d.f.ip6.arpa.", LDNS_RR_TYPE_PTR, empty),
	                LDNS_RCODE_NXDOMAIN, "a.a.d.f.ip6.arpa.");
	/* a peer without names (interactive-*) makes no reverse name exist; another does */
	char err[JSONL_ERR_MAX];
	if (import_str(fx->reg,
	               "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"interactive-99\","
	               "\"ip\":\"fdaa:0:18:5::9\",\"region\":\"ord\"}\n"
	               "{\"kind\":\"peer\",\"org\":\"alpha\",\"name\":\"desk\","
	               "\"ip\":\"fdaa:0:18:6::9\",\"region\":\"ord\"}\n",
	               false, err))
		fail_msg("%s", err);
	reg_txn_reset(fx->txn);
	assert_int_equal(reg_txn_renew(fx->txn), 0);
	assert_negative(ask(fx, "5.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.", LDNS_RR_TYPE_PTR),
	                LDNS_RCODE_NXDOMAIN, "a.a.d.f.ip6.arpa.");
	assert_negative(ask(fx, "6.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.", LDNS_RR_TYPE_PTR),
	                LDNS_RCODE_NOERROR, "a.a.d.f.ip6.arpa.");
}

/* The names between an app and its records exist while the app has a started Machine;
 * a name below a leaf does not. */
static void test_in_between_names_are_empty_non_terminals(void **state)
{
	fx_t *fx = *state;
	const char *ent[] = {"vm.web.internal.", "process.web.internal.", "of.web.internal.",
	                     "nearest.of.web.internal."};
	for (size_t i = 0; i < sizeof(ent) / sizeof(ent[0]); i++) {
		assert_negative(ask(fx, ent[i], LDNS_RR_TYPE_AAAA), LDNS_RCODE_NOERROR,
		                "internal.");
		char gone[64];
		snprintf(gone, sizeof(gone), "%.*sgone.internal.", (int)(strlen(ent[i]) - 13),
		         ent[i]);
		assert_negative(ask(fx, gone, LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN, "internal.");
	}
	const char *nx[] = {"x.vms.web.internal.",      "x.00000000000001.vm.web.internal.",
	                    "x.ord.web.internal.",      "x.app.process.web.internal.",
	                    "x.laptop._peer.internal.", "x._apps.internal.",
	                    "x.web.flycast.",           "x.top1.nearest.of.web.internal."};
	for (size_t i = 0; i < sizeof(nx) / sizeof(nx[0]); i++)
		assert_negative(ask(fx, nx[i], LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN,
		                strstr(nx[i], "flycast") ? "flycast." : "internal.");
}

static void test_truncation_over_udp_and_the_whole_set_over_tcp(void **state)
{
	fx_t *fx = *state;
	ldns_pkt *p = ask(fx, "big.internal.", LDNS_RR_TYPE_AAAA);
	assert_true(ldns_pkt_tc(p));
	/* (512 - 12 - 18 question) / 28 = 17 whole records */
	assert_int_equal(ldns_pkt_ancount(p), 17);
	ldns_pkt_free(p);
	p = ask_how(fx, "big.internal.", LDNS_RR_TYPE_AAAA, (how_t){.edns = 1232});
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), (1232 - 12 - 17 - 11) / 28);
	ldns_pkt_free(p);
	p = ask_how(fx, "big.internal.", LDNS_RR_TYPE_AAAA, (how_t){.tcp = true});
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 200);
	ldns_pkt_free(p);
}

static void test_aaaa_sets_are_shuffled(void **state)
{
	fx_t *fx = *state;
	char first[64] = "";
	int differ = 0;
	for (int i = 0; i < 40; i++) {
		ldns_pkt *p = ask(fx, "geo.internal.", LDNS_RR_TYPE_AAAA);
		char *list = addrs(p, false);
		char *comma = strchr(list, ',');
		*comma = 0;
		if (i == 0)
			snprintf(first, sizeof(first), "%s", list);
		else if (strcmp(first, list))
			differ++;
		ldns_pkt_free(p);
	}
	assert_true(differ > 0); /* 5 addresses: 39 draws all equal has p = 5^-39 */
}

static void test_nearest_orders_by_distance_then_id(void **state)
{
	fx_t *fx = *state;
	/* from a Machine in ord: both ord Machines by id, then iad (ORD-IAD < ORD-AMS) */
	how_t ord = {.src = "fdaa:0:18:1:1:0:1:2", .dst = "fdaa::3"};
	ldns_pkt *p = ask_how(fx, "top3.nearest.of.geo.internal.", LDNS_RR_TYPE_AAAA, ord);
	assert_string_equal(addrs(p, false),
	                    "fdaa:0:18:3:1:0:1:2,fdaa:0:18:3:1:0:3:2,fdaa:0:18:3:1:0:2:2");
	ldns_pkt_free(p);
	/* from the peer in ams: ams, then iad (AMS-IAD < AMS-ORD) */
	how_t ams = {.src = "fdaa:0:18:2::2", .dst = "fdaa::3"};
	p = ask_how(fx, "top2.nearest.of.geo.internal.", LDNS_RR_TYPE_AAAA, ams);
	assert_string_equal(addrs(p, false), "fdaa:0:18:3:1:0:4:2,fdaa:0:18:3:1:0:2:2");
	ldns_pkt_free(p);
	/* more than there are: all of them, syd last from ord */
	p = ask_how(fx, "top9.nearest.of.geo.internal.", LDNS_RR_TYPE_AAAA, ord);
	assert_int_equal(ldns_pkt_ancount(p), 6);
	assert_non_null(strstr(addrs(p, false), ",fdaa:0:18:3:1:0:5:2"));
	ldns_pkt_free(p);
	/* an unknown source falls back to the server's region */
	fx->conf.region = "syd", fx->conf.region_len = 3;
	p = ask(fx, "top1.nearest.of.geo.internal.", LDNS_RR_TYPE_AAAA);
	assert_string_equal(addrs(p, false), "fdaa:0:18:3:1:0:5:2");
	ldns_pkt_free(p);
}

static void test_refusals(void **state)
{
	fx_t *fx = *state;
	ldns_pkt *p =
	        ask_how(fx, "web.internal.", LDNS_RR_TYPE_AAAA, (how_t){.cls = LDNS_RR_CLASS_CH});
	assert_rcode(p, LDNS_RCODE_REFUSED, 0);
	ldns_pkt_free(p);
	p = ask_how(fx, "web.internal.", LDNS_RR_TYPE_AAAA, (how_t){.src = "2001:db8::1"});
	assert_rcode(p, LDNS_RCODE_REFUSED, 0);
	ldns_pkt_free(p);
	/* refused for everything: a question it would get NOTIMP for too */
	p = ask_how(fx, "web.internal.", (ldns_rr_type)200, (how_t){.src = "2001:db8::1"});
	assert_rcode(p, LDNS_RCODE_REFUSED, 0);
	ldns_pkt_free(p);
	p = ask(fx, "web.internal.", (ldns_rr_type)200);
	assert_rcode(p, LDNS_RCODE_NOTIMPL, 0);
	ldns_pkt_free(p);
	p = ask(fx, "example.com.", LDNS_RR_TYPE_A); /* no forwarding configured */
	assert_rcode(p, LDNS_RCODE_REFUSED, 0);
	ldns_pkt_free(p);
	p = ask(fx, "internal.", LDNS_RR_TYPE_AXFR);
	assert_rcode(p, LDNS_RCODE_REFUSED, 0);
	ldns_pkt_free(p);
	fx->ctx.has_default = false;
	p = ask(fx, "web.internal.", LDNS_RR_TYPE_AAAA);
	assert_rcode(p, LDNS_RCODE_REFUSED, 0);
	ldns_pkt_free(p);
	fx->conf.forward = true; /* forwarding needs no org */
	uint8_t q[64];
	size_t outlen;
	ldns_pkt *qp = NULL;
	ldns_pkt_query_new_frm_str(&qp, "Example.COM.", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 0);
	size_t len = pkt_wire(qp, q);
	ans_client_t cl = {.src = {[15] = 1}, .dst = {[15] = 1}};
	uint8_t out[512];
	assert_int_equal(ans_process(&fx->ctx, &cl, q, len, out, sizeof(out), &outlen),
	                 ANS_FORWARD);
	/* the question to forward, parsed once: the server and the cache use this parse */
	assert_int_equal(fx->ctx.q.qtype, LDNS_RR_TYPE_A);
	assert_int_equal(fx->ctx.q.qname_len, 13);
	assert_memory_equal(fx->ctx.q.qname,
	                    "\x07"
	                    "example"
	                    "\x03"
	                    "com",
	                    13);
	assert_int_equal(fx->ctx.q.question_end, len);
}

static void test_edns_answers(void **state)
{
	fx_t *fx = *state;
	ldns_pkt *p = ask_how(fx, "web.internal.", LDNS_RR_TYPE_AAAA, (how_t){.edns = 4096});
	assert_true(ldns_pkt_edns(p));
	assert_int_equal(ldns_pkt_edns_udp_size(p), 1232);
	ldns_pkt_free(p);
	p = ask(fx, "web.internal.", LDNS_RR_TYPE_AAAA);
	assert_false(ldns_pkt_edns(p)); /* no OPT without one in the query */
	ldns_pkt_free(p);
}

static int stop_web1(reg_txn_t *t, void *arg)
{
	(void)arg;
	return reg_set_state(t, "00000000000001", "stopped");
}

static void test_a_write_is_answered_after_renew(void **state)
{
	fx_t *fx = *state;
	assert_int_equal(reg_write(fx->reg, stop_web1, NULL), 0);
	expect_addrs(fx, "web.internal.", "fdaa:0:18:1:1:0:1:2,fdaa:0:18:1:1:0:2:2");
	reg_txn_reset(fx->txn);
	assert_int_equal(reg_txn_renew(fx->txn), 0);
	expect_addrs(fx, "web.internal.", "fdaa:0:18:1:1:0:2:2");
	assert_negative(ask(fx, "primary.role.kv._metadata.web.internal.", LDNS_RR_TYPE_AAAA),
	                LDNS_RCODE_NXDOMAIN, "internal.");
}

#define HC(n) "fdaa:0:18:1:5:0:" #n ":2"

/* healthy.<form>: the form less the Machines with a critical check; passing, warning and
 * no checks count as healthy; none healthy is NODATA, never the whole set. */
static void test_healthy_forms_leave_out_critical_machines(void **state)
{
	fx_t *fx = *state;
	expect_addrs(fx, "hc.internal.", HC(1) "," HC(2) "," HC(3) "," HC(4) "," HC(5) "," HC(6));
	expect_addrs(fx, "healthy.hc.internal.", HC(1) "," HC(2) "," HC(4));
	expect_addrs(fx, "Healthy.global.hc.internal.", HC(1) "," HC(2) "," HC(4));
	expect_addrs(fx, "healthy.ord.hc.internal.", HC(1) "," HC(2));
	expect_addrs(fx, "healthy.iad.hc.internal.", HC(4));
	expect_addrs(fx, "healthy.worker.process.hc.internal.", HC(4));
	expect_addrs(fx, "healthy.app.process.hc.internal.", HC(1) "," HC(2));
	expect_addrs(fx, "healthy.gold.tier.kv._metadata.hc.internal.", HC(1) "," HC(2));
	expect_addrs(fx, "healthy.tier.kv._metadata.hc.internal.", HC(1) "," HC(2));
	expect_addrs(fx, "healthy.d0000000000001.vm.hc.internal.", HC(1));
	/* no region known: every region as near, so by id; d..3 is skipped, not cut */
	expect_addrs(fx, "healthy.top3.nearest.of.hc.internal.", HC(1) "," HC(2) "," HC(4));
	expect_addrs(fx, "top3.nearest.of.hc.internal.", HC(1) "," HC(2) "," HC(3));
	/* none healthy: NODATA (the bare name is the fail-open one) */
	assert_negative(ask(fx, "healthy.ams.hc.internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NOERROR,
	                "internal.");
	expect_addrs(fx, "ams.hc.internal.", HC(6));
	assert_negative(ask(fx, "healthy.d0000000000003.vm.hc.internal.", LDNS_RR_TYPE_AAAA),
	                LDNS_RCODE_NOERROR, "internal.");
	/* existence is the bare form's; other types NODATA */
	assert_negative(ask(fx, "healthy.nope.internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN,
	                "internal.");
	assert_negative(ask(fx, "healthy.syd.hc.internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN,
	                "internal.");
	assert_negative(ask(fx, "healthy.hc.internal.", LDNS_RR_TYPE_TXT), LDNS_RCODE_NOERROR,
	                "internal.");
	assert_negative(ask(fx, "healthy.vms.hc.internal.", LDNS_RR_TYPE_TXT), LDNS_RCODE_NXDOMAIN,
	                "internal.");
	/* an app without checks: healthy. is the whole set */
	expect_addrs(fx, "healthy.web.internal.", "fdaa:0:18:1:1:0:1:2,fdaa:0:18:1:1:0:2:2");
	/* TXT lists stay as they are */
	expect_txt(fx, "vms.hc.internal.",
	           "d0000000000001 ord,d0000000000002 ord,d0000000000003 ord,d0000000000004 iad,"
	           "d0000000000005 iad,d0000000000006 ams");
}

static void test_a_check_flip_is_answered_after_renew(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	const char *flip =
	        "{\"kind\":\"machine\",\"id\":\"d0000000000003\",\"org\":\"alpha\","
	        "\"app\":\"hc\",\"region\":\"ord\",\"private_ip\":\"fdaa:0:18:1:5:0:3:2\","
	        "\"metadata\":{\"tier\":\"gold\"},\"checks\":[{\"name\":\"tcp\","
	        "\"status\":\"passing\"}]}\n"
	        "{\"kind\":\"machine\",\"id\":\"d0000000000001\",\"org\":\"alpha\","
	        "\"app\":\"hc\",\"region\":\"ord\",\"private_ip\":\"fdaa:0:18:1:5:0:1:2\","
	        "\"metadata\":{\"tier\":\"gold\"},\"checks\":[{\"name\":\"http\","
	        "\"status\":\"critical\"}]}\n";
	assert_int_equal(import_str(fx->reg, flip, false, err), 0);
	expect_addrs(fx, "healthy.ord.hc.internal.", HC(1) "," HC(2)); /* the old snapshot */
	reg_txn_reset(fx->txn);
	assert_int_equal(reg_txn_renew(fx->txn), 0);
	expect_addrs(fx, "healthy.ord.hc.internal.", HC(2) "," HC(3));
	expect_addrs(fx, "healthy.gold.tier.kv._metadata.hc.internal.", HC(2) "," HC(3));
	assert_negative(ask(fx, "healthy.d0000000000001.vm.hc.internal.", LDNS_RR_TYPE_AAAA),
	                LDNS_RCODE_NOERROR, "internal.");
	expect_addrs(fx, "ord.hc.internal.", HC(1) "," HC(2) "," HC(3));
}

/* Raw bytes through ans_process (forwarding on, so RA is set on QUERY answers). */
static ldns_pkt *ask_raw(fx_t *fx, const uint8_t *q, size_t len)
{
	uint8_t out[512];
	size_t outlen = 0;
	ans_client_t cl = {.src = {[15] = 1}, .dst = {[15] = 1}};
	assert_int_equal(ans_process(&fx->ctx, &cl, q, len, out, sizeof(out), &outlen), ANS_REPLY);
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, out, outlen), LDNS_STATUS_OK);
	return p;
}

static void test_opcodes_other_than_query_are_notimp_without_ra(void **state)
{
	fx_t *fx = *state;
	fx->conf.forward = true;
	/* id 1, RD, qd 1: web.internal. AAAA IN */
	uint8_t q[] = {0,   1, 1,   0,   0,   1,   0,   0,   0,   0,   0, 0, 3,  'w', 'e',
	               'b', 8, 'i', 'n', 't', 'e', 'r', 'n', 'a', 'l', 0, 0, 28, 0,   1};
	ldns_pkt *p = ask_raw(fx, q, sizeof(q));
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_true(ldns_pkt_ra(p)); /* QUERY: we recurse for names outside our zones */
	ldns_pkt_free(p);
	for (unsigned op = 1; op < 16; op++) {
		q[2] = (uint8_t)(op << 3 | 1);
		p = ask_raw(fx, q, sizeof(q));
		assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOTIMPL);
		assert_false(ldns_pkt_ra(p));
		assert_false(ldns_pkt_aa(p));
		assert_int_equal(ldns_pkt_get_opcode(p), op);
		assert_int_equal(ldns_pkt_qdcount(p), 1);
		ldns_pkt_free(p);
	}
}

/* A query for name (wire form, n bytes) of any qtype: ldns turns type 0 into A. */
static ldns_pkt *ask_type(fx_t *fx, const char *name, size_t n, uint16_t type)
{
	uint8_t q[300] = {0, 1, 1, 0, 0, 1};
	memcpy(q + 12, name, n);
	q[12 + n] = (uint8_t)(type >> 8), q[13 + n] = (uint8_t)type, q[15 + n] = 1;
	return ask_raw(fx, q, 16 + n);
}

static void test_qtype_zero_is_notimp_also_outside_our_zones(void **state)
{
	fx_t *fx = *state;
	fx->conf.forward = true;
	static const struct {
		const char *name;
		size_t len;
	} names[] = {{"\003web\010internal", 14},
	             {"\004nope\010internal", 15},
	             {"\007example\003com", 13}};
	for (size_t i = 0; i < 3; i++) {
		ldns_pkt *p =
		        ask_type(fx, names[i].name, names[i].len, 0); /* answered, not forwarded */
		assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOTIMPL);
		assert_false(ldns_pkt_aa(p));
		ldns_pkt_free(p);
	}
	ldns_pkt *p = ask_type(fx, names[0].name, names[0].len, 200);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOTIMPL);
	ldns_pkt_free(p);
	/* MAILB: a meta-type with a meaning, and no data here */
	assert_negative(ask_type(fx, names[0].name, names[0].len, 253), LDNS_RCODE_NOERROR,
	                "internal.");
}

/* RFC 8914: a refusal and a NOTIMP say why, in the OPT of a client that sent one; a
 * normal answer, a FORMERR and a client without EDNS get no EDE. */
static void expect_ede(fx_t *fx, const char *name, ldns_rr_type type, how_t h, ldns_pkt_rcode rcode,
                       int ede, const char *text)
{
	char got[80] = "";
	h.edns = 1232;
	ldns_pkt *p = ask_how(fx, name, type, h);
	assert_non_null(p);
	assert_int_equal(ldns_pkt_get_rcode(p), rcode);
	assert_int_equal(ldns_ede(p, got, sizeof(got)), ede);
	if (text)
		assert_string_equal(got, text);
	ldns_pkt_free(p);
	h.edns = 0; /* the same question without EDNS: no OPT, so no EDE */
	p = ask_how(fx, name, type, h);
	assert_int_equal(ldns_pkt_get_rcode(p), rcode);
	assert_false(ldns_pkt_edns(p));
	ldns_pkt_free(p);
}

static void test_extended_errors_say_why(void **state)
{
	fx_t *fx = *state;
	how_t outside = {.src = "2001:db8::1"},
	      other = {.src = "fdaa:0:19:1:1:0:b:2", .dst = "fdaa:0:18::3"};
	expect_ede(fx, "web.internal.", LDNS_RR_TYPE_AAAA, outside, LDNS_RCODE_REFUSED, 18,
	           "source not allowed");
	expect_ede(fx, "web.internal.", LDNS_RR_TYPE_AAAA, other, LDNS_RCODE_REFUSED, 18,
	           "another org's resolver");
	expect_ede(fx, "web.internal.", (ldns_rr_type)200, (how_t){0}, LDNS_RCODE_NOTIMPL, 21,
	           "QTYPE not supported");
	/* no EDE on an answer, NXDOMAIN or a refusal that is no policy of the source's */
	expect_ede(fx, "web.internal.", LDNS_RR_TYPE_AAAA, (how_t){0}, LDNS_RCODE_NOERROR, -1,
	           NULL);
	expect_ede(fx, "nope.internal.", LDNS_RR_TYPE_AAAA, (how_t){0}, LDNS_RCODE_NXDOMAIN, -1,
	           NULL);
	/* a registry that never synced: Not Ready, for every name of our zones */
	fx->ctx.not_ready = true;
	expect_ede(fx, "web.internal.", LDNS_RR_TYPE_AAAA, (how_t){0}, LDNS_RCODE_SERVFAIL, 14,
	           "registry not synced yet");
	expect_ede(fx, "internal.", LDNS_RR_TYPE_SOA, (how_t){0}, LDNS_RCODE_SERVFAIL, 14, NULL);
	fx->ctx.not_ready = false;
	/* an opcode other than QUERY, with an OPT: 21 too */
	ldns_pkt *q = NULL;
	ldns_pkt_query_new_frm_str(&q, "web.internal.", LDNS_RR_TYPE_AAAA, LDNS_RR_CLASS_IN, 0);
	ldns_pkt_set_opcode(q, LDNS_PACKET_NOTIFY);
	ldns_pkt_set_edns_udp_size(q, 1232);
	uint8_t buf[512];
	size_t len = pkt_wire(q, buf);
	ldns_pkt *p = ask_raw(fx, buf, len);
	char got[80];
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOTIMPL);
	assert_int_equal(ldns_ede(p, got, sizeof(got)), 21);
	assert_string_equal(got, "opcode not supported");
	ldns_pkt_free(p);
}

static void test_apex_ns_target_resolves_to_the_address_asked(void **state)
{
	fx_t *fx = *state;
	ldns_pkt *p = ask(fx, "internal.", LDNS_RR_TYPE_NS);
	char *target = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 0));
	assert_string_equal(target, "_ns.internal.");
	ldns_pkt_free(p);
	p = ask_how(fx, target, LDNS_RR_TYPE_AAAA,
	            (how_t){.src = "fdaa:0:18:1:1:0:1:2", .dst = "fdaa::3"});
	assert_rcode(p, LDNS_RCODE_NOERROR, 1);
	assert_true(ldns_pkt_aa(p));
	assert_string_equal(addrs(p, false), "fdaa::3");
	ldns_pkt_free(p);
	p = ask_how(fx, "_NS.internal.", LDNS_RR_TYPE_AAAA,
	            (how_t){.dst = "fdaa:0:18::3", .src = "fdaa:0:18:2::2"});
	assert_string_equal(addrs(p, false), "fdaa:0:18::3");
	ldns_pkt_free(p);
	/* over IPv4 it is an A record; the other family is NODATA */
	how_t v4 = {.src = "::ffff:127.0.0.1", .dst = "::ffff:127.0.0.1"};
	p = ask_how(fx, target, LDNS_RR_TYPE_A, v4);
	assert_rcode(p, LDNS_RCODE_NOERROR, 1);
	char *a = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 0));
	assert_string_equal(a, "127.0.0.1");
	free(a);
	ldns_pkt_free(p);
	assert_negative(ask_how(fx, target, LDNS_RR_TYPE_AAAA, v4), LDNS_RCODE_NOERROR,
	                "internal.");
	assert_negative(ask(fx, target, LDNS_RR_TYPE_TXT), LDNS_RCODE_NOERROR, "internal.");
	assert_negative(ask(fx, "x._ns.internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN,
	                "internal.");
	free(target);
}

static void test_no_app_can_take_the_ns_target_name(void **state)
{
	fx_t *fx = *state;
	char err[JSONL_ERR_MAX];
	assert_int_not_equal(import_str(fx->reg,
	                                MACHINE("0000000000000e", "alpha", "_ns", "ord",
	                                        "fdaa:0:18:1:1:0:e:2", "started", "app", ""),
	                                false, err),
	                     0);
	assert_non_null(strstr(err, "app"));
}

static void test_all_names_list_every_state(void **state)
{
	expect_txt(*state, "all.vms.web.internal.",
	           "00000000000001 ord,00000000000002 iad,00000000000003 ord");
	expect_txt(*state, "all.regions.web.internal.", "iad,ord");
	/* an app with only stopped Machines exists under all. names only */
	expect_txt(*state, "all.vms.gone.internal.", "00000000000004 ord");
	expect_txt(*state, "all.regions.gone.internal.", "ord");
	/* vms.gone and regions.gone are only the names above all.vms.gone, all.regions.gone */
	assert_negative(ask(*state, "vms.gone.internal.", LDNS_RR_TYPE_TXT), LDNS_RCODE_NOERROR,
	                "internal.");
	assert_negative(ask(*state, "regions.gone.internal.", LDNS_RR_TYPE_TXT), LDNS_RCODE_NOERROR,
	                "internal.");
	assert_negative(ask(*state, "ord.gone.internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN,
	                "internal.");
	assert_negative(ask(*state, "gone.internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NOERROR,
	                "internal."); /* the empty non-terminal above all.vms.gone */
	assert_negative(ask(*state, "global.gone.internal.", LDNS_RR_TYPE_AAAA),
	                LDNS_RCODE_NXDOMAIN, "internal."); /* nothing below it */
	/* all.vms.gone lies below vms.gone: all.gone is no ancestor of anything */
	assert_negative(ask(*state, "all.gone.internal.", LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN,
	                "internal.");
	assert_negative(ask(*state, "all.web.internal.", LDNS_RR_TYPE_TXT), LDNS_RCODE_NXDOMAIN,
	                "internal.");
	assert_negative(ask(*state, "all.vms.nope.internal.", LDNS_RR_TYPE_TXT),
	                LDNS_RCODE_NXDOMAIN, "internal.");
	ldns_pkt *p =
	        ask_how(*state, "all._instances.internal.", LDNS_RR_TYPE_TXT, (how_t){.tcp = true});
	const char *t = txt(p);
	assert_non_null(strstr(t, "instance=00000000000004,app=gone,ip=fdaa:0:18:1:1:0:4:2,"
	                          "region=ord;"));
	assert_non_null(strstr(t, "instance=00000000000003,app=web,"));
	assert_null(strstr(t, "fdaa:0:19")); /* another org */
	ldns_pkt_free(p);
}

static void test_skip_registration_is_in_no_name(void **state)
{
	expect_addrs(*state, "web.internal.", "fdaa:0:18:1:1:0:1:2,fdaa:0:18:1:1:0:2:2");
	assert_negative(ask(*state, "cc000000000001.vm.web.internal.", LDNS_RR_TYPE_AAAA),
	                LDNS_RCODE_NXDOMAIN, "internal.");
	ldns_pkt *p =
	        ask_how(*state, "all._instances.internal.", LDNS_RR_TYPE_TXT, (how_t){.tcp = true});
	assert_null(strstr(txt(p), "cc00000000000"));
	ldns_pkt_free(p);
	assert_negative(ask(*state, "all.vms.hidden.internal.", LDNS_RR_TYPE_TXT),
	                LDNS_RCODE_NXDOMAIN, "internal.");
	assert_negative(
	        ask(*state,
	            "2.0.0.0.1.c.0.0.0.0.0.0.1.0.0.0.1.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.",
	            LDNS_RR_TYPE_PTR),
	        LDNS_RCODE_NXDOMAIN, "a.a.d.f.ip6.arpa.");
}

static void test_interactive_peers_are_nowhere(void **state)
{
	expect_txt(*state, "_peer.internal.", "laptop");
	assert_negative(ask(*state, "interactive-7f3a._peer.internal.", LDNS_RR_TYPE_AAAA),
	                LDNS_RCODE_NXDOMAIN, "internal.");
	assert_negative(
	        ask(*state,
	            "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.8.1.0.0.0.0.0.0.a.a.d.f.ip6.arpa.",
	            LDNS_RR_TYPE_PTR),
	        LDNS_RCODE_NXDOMAIN, "a.a.d.f.ip6.arpa.");
}

static void test_empty_lists_are_one_empty_string(void **state)
{
	how_t empty = {.src = "fdaa:0:77::5", .dst = "fdaa::3"};
	const char *lists[] = {"_apps.internal.", "_peer.internal.", "_instances.internal.",
	                       "all._instances.internal."};
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		ldns_pkt *p = ask_how(*state, lists[i], LDNS_RR_TYPE_TXT, empty);
		assert_rcode(p, LDNS_RCODE_NOERROR, 1);
		ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
		assert_int_equal(ldns_rr_rd_count(rr), 1);
		assert_int_equal(ldns_rdf_size(ldns_rr_rdf(rr, 0)), 1); /* one empty string */
		ldns_pkt_free(p);
	}
}

static void test_metadata_of_any_text_and_the_key_only_form(void **state)
{
	expect_addrs(*state, "app.fly_process_group.kv._metadata.geo.internal.",
	             "fdaa:0:18:3:1:0:2:2");
	expect_addrs(*state, "fly_process_group.kv._metadata.geo.internal.",
	             "fdaa:0:18:3:1:0:2:2,fdaa:0:18:3:1:0:6:2");
	/* indexed lower-cased: names ignore case */
	expect_addrs(*state, "01hzrelease.FLY_RELEASE_ID.kv._metadata.geo.internal.",
	             "fdaa:0:18:3:1:0:2:2");
	/* v1.2.3 is stored but is no label: the pair has no name */
	const char *nx[] = {"version.kv._metadata.geo.internal.",
	                    "nokey.kv._metadata.geo.internal.",
	                    "other.fly_process_group.kv._metadata.geo.internal.",
	                    "_metadata.big.internal.",
	                    "kv._metadata.big.internal.",
	                    "anything.kv._metadata.big.internal."};
	for (size_t i = 0; i < sizeof(nx) / sizeof(nx[0]); i++)
		assert_negative(ask(*state, nx[i], LDNS_RR_TYPE_AAAA), LDNS_RCODE_NXDOMAIN,
		                "internal.");
	assert_negative(ask(*state, "_metadata.geo.internal.", LDNS_RR_TYPE_AAAA),
	                LDNS_RCODE_NOERROR, "internal.");
	assert_negative(ask(*state, "kv._metadata.geo.internal.", LDNS_RR_TYPE_AAAA),
	                LDNS_RCODE_NOERROR, "internal.");
}

static uint32_t soa_serial(fx_t *fx, const char *src)
{
	ldns_pkt *p =
	        ask_how(fx, "internal.", LDNS_RR_TYPE_SOA, (how_t){.src = src, .dst = "fdaa::3"});
	assert_rcode(p, LDNS_RCODE_NOERROR, 1);
	uint32_t s = ldns_rdf2native_int32(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 0), 2));
	ldns_pkt_free(p);
	return s;
}

static int stop_beta(reg_txn_t *t, void *arg)
{
	(void)arg;
	return reg_set_state(t, "0000000000000b", "stopped");
}

static void test_soa_serial_is_per_org(void **state)
{
	fx_t *fx = *state;
	const char *a = "fdaa:0:18:1:1:0:1:2", *b = "fdaa:0:19:1:1:0:b:2";
	uint32_t a0 = soa_serial(fx, a), b0 = soa_serial(fx, b);
	assert_int_equal(reg_write(fx->reg, stop_beta, NULL), 0);
	reg_txn_reset(fx->txn);
	assert_int_equal(reg_txn_renew(fx->txn), 0);
	assert_int_equal(soa_serial(fx, a), a0); /* beta's write is not alpha's business */
	assert_true(soa_serial(fx, b) > b0);
}

static void test_nearest_from_a_stopped_querier_uses_its_region(void **state)
{
	fx_t *fx = *state;
	fx->conf.region = "syd", fx->conf.region_len = 3;
	/* 00000000000003 is stopped, in ord: its region, not the server's */
	how_t stopped = {.src = "fdaa:0:18:1:1:0:3:2", .dst = "fdaa::3"};
	ldns_pkt *p = ask_how(fx, "top1.nearest.of.geo.internal.", LDNS_RR_TYPE_AAAA, stopped);
	assert_string_equal(addrs(p, false), "fdaa:0:18:3:1:0:1:2");
	ldns_pkt_free(p);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(test_app_answers_its_started_machines),
	        T(test_owner_name_keeps_the_question_case),
	        T(test_region_group_vm_metadata_forms),
	        T(test_txt_forms),
	        T(test_instances_is_split_into_255_byte_strings),
	        T(test_nodata_has_soa),
	        T(test_nxdomain_has_soa),
	        T(test_apex_soa_and_ns),
	        T(test_orgs_never_see_each_other),
	        T(test_other_orgs_resolver_address_is_refused),
	        T(test_ptr_within_the_org_only),
	        T(test_truncation_over_udp_and_the_whole_set_over_tcp),
	        T(test_aaaa_sets_are_shuffled),
	        T(test_nearest_orders_by_distance_then_id),
	        T(test_refusals),
	        T(test_edns_answers),
	        T(test_a_write_is_answered_after_renew),
	        T(test_opcodes_other_than_query_are_notimp_without_ra),
	        T(test_qtype_zero_is_notimp_also_outside_our_zones),
	        T(test_apex_ns_target_resolves_to_the_address_asked),
	        T(test_no_app_can_take_the_ns_target_name),
	        T(test_reverse_prefixes_are_empty_non_terminals_of_the_org),
	        T(test_in_between_names_are_empty_non_terminals),
	        T(test_all_names_list_every_state),
	        T(test_skip_registration_is_in_no_name),
	        T(test_interactive_peers_are_nowhere),
	        T(test_empty_lists_are_one_empty_string),
	        T(test_metadata_of_any_text_and_the_key_only_form),
	        T(test_soa_serial_is_per_org),
	        T(test_nearest_from_a_stopped_querier_uses_its_region),
	        T(test_extended_errors_say_why),
	        T(test_healthy_forms_leave_out_critical_machines),
	        T(test_a_check_flip_is_answered_after_renew),
	};
	return cmocka_run_group_tests_name("answer", tests, NULL, NULL);
}
