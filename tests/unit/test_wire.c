/* test_wire.c — the query decoder and the response writer, checked against ldns as an
 * independent encoder and decoder; every malformed input gets its rcode or silence. */
#include "testreg.h"

#include "wire.h"

/* A query for name/type built by ldns; edns_size 0: no OPT. */
static size_t ldns_query(const char *name, ldns_rr_type type, uint16_t edns_size, bool dnssec_ok,
                         uint8_t *out)
{
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, type, LDNS_RR_CLASS_IN, LDNS_RD),
	                 LDNS_STATUS_OK);
	ldns_pkt_set_id(p, 0x1234);
	if (edns_size) {
		ldns_pkt_set_edns_udp_size(p, edns_size);
		ldns_pkt_set_edns_do(p, dnssec_ok);
	}
	return pkt_wire(p, out);
}

static void test_query_round_trip_from_ldns(void **s)
{
	(void)s;
	uint8_t pkt[512];
	size_t len = ldns_query("Web.Internal.", LDNS_RR_TYPE_AAAA, 0, false, pkt);
	wire_query_t q;
	assert_int_equal(wire_parse_query(pkt, len, &q), WIRE_OK);
	assert_int_equal(q.id, 0x1234);
	assert_true(q.rd);
	assert_int_equal(q.qtype, WIRE_AAAA);
	assert_int_equal(q.qclass, WIRE_CLASS_IN);
	assert_int_equal(q.qname_len, 14);
	assert_memory_equal(q.qname, "\003web\010internal\000", 14); /* lower-cased */
	assert_false(q.edns);
	assert_int_equal(q.question_end, len);
}

static void test_edns_is_read(void **s)
{
	(void)s;
	uint8_t pkt[512];
	size_t len = ldns_query("web.internal.", LDNS_RR_TYPE_AAAA, 4096, true, pkt);
	wire_query_t q;
	assert_int_equal(wire_parse_query(pkt, len, &q), WIRE_OK);
	assert_true(q.edns);
	assert_int_equal(q.edns_udp, 4096);
	assert_true(q.edns_do);
	assert_false(q.edns_nsid);
}

/* A raw query: header, question "a.", then extra bytes. */
static size_t raw(uint8_t *p, uint16_t qd, uint16_t ar, const uint8_t *extra, size_t n)
{
	const uint8_t head[] = {0xab,
	                        0xcd,
	                        0x01,
	                        0x00,
	                        (uint8_t)(qd >> 8),
	                        (uint8_t)qd,
	                        0,
	                        0,
	                        0,
	                        0,
	                        (uint8_t)(ar >> 8),
	                        (uint8_t)ar,
	                        1,
	                        'a',
	                        0,
	                        0,
	                        28,
	                        0,
	                        1};
	memcpy(p, head, sizeof(head));
	if (n)
		memcpy(p + sizeof(head), extra, n);
	return sizeof(head) + n;
}

static int parse_raw(const uint8_t *p, size_t n)
{
	wire_query_t q;
	return wire_parse_query(p, n, &q);
}

static void test_short_and_response_packets_are_dropped(void **s)
{
	(void)s;
	uint8_t p[64];
	size_t n = raw(p, 1, 0, NULL, 0);
	for (size_t i = 0; i < 12; i++)
		assert_int_equal(parse_raw(p, i), WIRE_DROP);
	p[2] |= 0x80; /* QR */
	assert_int_equal(parse_raw(p, n), WIRE_DROP);
}

static void test_question_count_must_be_one(void **s)
{
	(void)s;
	uint8_t p[64];
	size_t n = raw(p, 0, 0, NULL, 0);
	assert_int_equal(parse_raw(p, 12), WIRE_FORMERR);
	n = raw(p, 2, 0, NULL, 0);
	assert_int_equal(parse_raw(p, n), WIRE_FORMERR);
}

static void test_bad_names_are_formerr(void **s)
{
	(void)s;
	uint8_t p[600] = {0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0};
	/* a label of 64 (0x40: an extended label type) */
	p[12] = 64;
	assert_int_equal(parse_raw(p, 12 + 65 + 5), WIRE_FORMERR);
	/* a compression pointer in the question (even to itself: a loop) */
	p[12] = 0xc0, p[13] = 12;
	assert_int_equal(parse_raw(p, 18), WIRE_FORMERR);
	/* a name of more than 255 bytes: five labels of 63 */
	size_t o = 12;
	for (int i = 0; i < 5; i++) {
		p[o] = 63;
		memset(p + o + 1, 'a', 63);
		o += 64;
	}
	p[o++] = 0;
	memset(p + o, 0, 4);
	assert_int_equal(parse_raw(p, o + 4), WIRE_FORMERR);
	/* a question cut short */
	size_t n = raw(p, 1, 0, NULL, 0);
	for (size_t cut = 13; cut < n; cut++)
		assert_int_equal(parse_raw(p, cut), WIRE_FORMERR);
}

static void test_trailing_garbage_is_formerr(void **s)
{
	(void)s;
	uint8_t p[64], junk[3] = {1, 2, 3};
	size_t n = raw(p, 1, 0, junk, sizeof(junk));
	assert_int_equal(parse_raw(p, n), WIRE_FORMERR);
}

static const uint8_t opt_plain[] = {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0};

static void test_two_opt_records_are_formerr(void **s)
{
	(void)s;
	uint8_t p[64], two[22];
	memcpy(two, opt_plain, 11);
	memcpy(two + 11, opt_plain, 11);
	size_t n = raw(p, 1, 2, two, sizeof(two));
	wire_query_t q;
	assert_int_equal(wire_parse_query(p, n, &q), WIRE_FORMERR);
	assert_false(q.edns); /* no OPT in a FORMERR: there is no EDNS to answer in */
	uint8_t out[512];
	size_t len = wire_error_response(p, n, WIRE_FORMERR, out, sizeof(out));
	assert_int_equal(out[11], 0); /* ARCOUNT */
	assert_int_equal(len, n - sizeof(two));
	/* an option overrunning its OPT: the same */
	const uint8_t over[] = {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 9};
	n = raw(p, 1, 1, over, sizeof(over));
	assert_int_equal(wire_parse_query(p, n, &q), WIRE_FORMERR);
	assert_false(q.edns);
	n = raw(p, 1, 1, opt_plain, sizeof(opt_plain));
	assert_int_equal(parse_raw(p, n), WIRE_OK);
}

static void test_edns_version_one_is_badvers(void **s)
{
	(void)s;
	uint8_t p[64], opt[11];
	memcpy(opt, opt_plain, 11);
	opt[6] = 1;
	size_t n = raw(p, 1, 1, opt, sizeof(opt));
	wire_query_t q;
	assert_int_equal(wire_parse_query(p, n, &q), WIRE_BADVERS);
	assert_true(q.has_question);
	assert_true(q.edns);
}

static void test_edns_options(void **s)
{
	(void)s;
	uint8_t p[64], opt[11 + 8];
	memcpy(opt, opt_plain, 11);
	opt[10] = 8;
	/* NSID (empty) and an unknown option 65001 with 0 bytes */
	const uint8_t opts[8] = {0, 3, 0, 0, 0xfd, 0xe9, 0, 0};
	memcpy(opt + 11, opts, 8);
	size_t n = raw(p, 1, 1, opt, sizeof(opt));
	wire_query_t q;
	assert_int_equal(wire_parse_query(p, n, &q), WIRE_OK);
	assert_true(q.edns_nsid);
	/* an option whose length runs past the record */
	opt[11 + 3] = 9;
	n = raw(p, 1, 1, opt, sizeof(opt));
	assert_int_equal(parse_raw(p, n), WIRE_FORMERR);
}

static void test_opcode_other_than_query_is_notimp(void **s)
{
	(void)s;
	uint8_t p[64];
	size_t n = raw(p, 1, 0, NULL, 0);
	p[2] = 2 << 3; /* STATUS */
	wire_query_t q;
	assert_int_equal(wire_parse_query(p, n, &q), WIRE_NOTIMP);
	assert_true(q.has_question);
}

/* A request with an OPT gets a response with one (RFC 6891 section 6.1.1), NOTIMP too;
 * records that cannot be read leave it without. */
static void test_notimp_keeps_the_opt(void **s)
{
	(void)s;
	uint8_t p[512], out[512];
	size_t n = ldns_query("www.example.com.", LDNS_RR_TYPE_A, 1232, true, p);
	p[2] = (uint8_t)((p[2] & 0x87) | 4 << 3); /* NOTIFY */
	wire_query_t q;
	assert_int_equal(wire_parse_query(p, n, &q), WIRE_NOTIMP);
	assert_true(q.edns && q.edns_do);
	size_t len = wire_error_response(p, n, WIRE_NOTIMP, out, sizeof(out));
	ldns_pkt *r = NULL;
	assert_int_equal(ldns_wire2pkt(&r, out, len), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOTIMPL);
	assert_true(ldns_pkt_edns(r));
	assert_true(ldns_pkt_edns_do(r));
	ldns_pkt_free(r);
	p[11] = 2; /* two additional records claimed, one there */
	assert_int_equal(wire_parse_query(p, n, &q), WIRE_NOTIMP);
	assert_false(q.edns);
}

static void test_qtype_zero_and_unserved_meta_types_are_notimp(void **s)
{
	(void)s;
	uint8_t p[64];
	size_t n = raw(p, 1, 0, NULL, 0);
	static const struct {
		uint16_t type;
		int want;
	} cases[] = {{0, WIRE_NOTIMP},   {128, WIRE_NOTIMP}, {200, WIRE_NOTIMP}, {249, WIRE_NOTIMP},
	             {250, WIRE_NOTIMP}, {251, WIRE_OK},     {252, WIRE_OK},     {253, WIRE_OK},
	             {254, WIRE_OK},     {255, WIRE_OK},     {127, WIRE_OK},     {256, WIRE_OK},
	             {65535, WIRE_OK},   {1, WIRE_OK}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p[n - 4] = (uint8_t)(cases[i].type >> 8), p[n - 3] = (uint8_t)cases[i].type;
		wire_query_t q;
		assert_int_equal(wire_parse_query(p, n, &q), cases[i].want);
		assert_true(q.has_question);
	}
}

static void test_error_response_sets_ra_only_on_query(void **s)
{
	(void)s;
	uint8_t p[64], out[512];
	size_t n = raw(p, 1, 0, NULL, 0);
	assert_int_equal(wire_error_response(p, n, WIRE_SERVFAIL, out, sizeof(out)), n);
	assert_true(out[3] & 0x80);
	p[2] = 4 << 3; /* NOTIFY */
	assert_int_equal(wire_error_response(p, n, WIRE_NOTIMP, out, sizeof(out)), n);
	assert_false(out[3] & 0x80);
	assert_int_equal(out[3] & 0xf, WIRE_NOTIMP);
}

/* Writes a response to a query for "Web.Internal." and returns it parsed by ldns. */
static ldns_pkt *respond(void (*fill)(wire_resp_t *), size_t size, uint8_t *out, size_t *len)
{
	uint8_t pkt[512];
	size_t n = ldns_query("Web.Internal.", LDNS_RR_TYPE_AAAA, 1232, false, pkt);
	wire_query_t q;
	wire_resp_t r;
	assert_int_equal(wire_parse_query(pkt, n, &q), WIRE_OK);
	assert_int_equal(wire_resp_begin(&r, out, 65535, size, wire_opt_size(4), pkt, &q), 0);
	fill(&r);
	wire_resp_rcode(&r, WIRE_NOERROR);
	wire_resp_flags(&r, true, false);
	assert_int_equal(wire_add_opt(&r, false, "host", 4), 0);
	*len = wire_resp_end(&r);
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, out, *len), LDNS_STATUS_OK);
	return p;
}

static void fill_records(wire_resp_t *r)
{
	uint8_t ip[16] = {0xfd, 0xaa, [15] = 1};
	for (int i = 0; i < 3; i++) {
		ip[14] = (uint8_t)i;
		assert_int_equal(wire_add_aaaa(r, WIRE_HDR, 5, ip), 0);
	}
	assert_int_equal(wire_add_soa(r, WIRE_NS_SEC, WIRE_HDR + 4, 5, 77, 5, WIRE_HDR + 4), 0);
}

static void test_response_decodes_with_ldns(void **s)
{
	(void)s;
	uint8_t out[65535];
	size_t len;
	ldns_pkt *p = respond(fill_records, 1232, out, &len);
	assert_true(ldns_pkt_qr(p));
	assert_true(ldns_pkt_aa(p));
	assert_int_equal(ldns_pkt_id(p), 0x1234);
	assert_int_equal(ldns_pkt_ancount(p), 3);
	assert_int_equal(ldns_pkt_nscount(p), 1);
	ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
	char *owner = ldns_rdf2str(ldns_rr_owner(rr));
	assert_string_equal(owner, "Web.Internal."); /* case as the client sent it */
	free(owner);
	assert_int_equal(ldns_rr_get_type(rr), LDNS_RR_TYPE_AAAA);
	assert_int_equal(ldns_rr_ttl(rr), 5);
	ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(p), 0);
	char *text = ldns_rr2str(soa);
	assert_non_null(strstr(text,
	                       "Internal.\t5\tIN\tSOA\t_ns.Internal. hostmaster.Internal. 77 3600 "
	                       "600 86400 5"));
	free(text);
	assert_int_equal(ldns_pkt_edns_udp_size(p), 1232);
	ldns_rdf *opts = ldns_pkt_edns_data(p); /* NSID: code 3, length 4, "host" */
	assert_non_null(opts);
	assert_int_equal(ldns_rdf_size(opts), 8);
	assert_memory_equal(ldns_rdf_data(opts), "\0\3\0\4host", 8);
	ldns_pkt_free(p);
}

static void fill_txt(wire_resp_t *r)
{
	char text[600];
	memset(text, 'x', sizeof(text));
	assert_int_equal(wire_txt_begin(r, WIRE_HDR, 5), 0);
	assert_int_equal(wire_txt_append(r, text, 200), 0);
	assert_int_equal(wire_txt_append(r, text, 400), 0);
	size_t mark = wire_txt_mark(r);
	assert_int_equal(wire_txt_append(r, text, 10), 0);
	wire_txt_rewind(r, mark);
	assert_int_equal(wire_txt_end(r), 0);
}

static void test_txt_splits_at_255_bytes(void **s)
{
	(void)s;
	uint8_t out[65535];
	size_t len;
	ldns_pkt *p = respond(fill_txt, 1232, out, &len);
	assert_int_equal(ldns_pkt_ancount(p), 1);
	ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
	assert_int_equal(ldns_rr_rd_count(rr), 3);
	assert_int_equal(ldns_rdf_size(ldns_rr_rdf(rr, 0)), 256);
	assert_int_equal(ldns_rdf_size(ldns_rr_rdf(rr, 1)), 256);
	assert_int_equal(ldns_rdf_size(ldns_rr_rdf(rr, 2)), 91); /* 600 - 510, rewound 10 */
	ldns_pkt_free(p);
}

static void fill_until_full(wire_resp_t *r)
{
	uint8_t ip[16] = {0xfd, 0xaa};
	int n = 0;
	while (wire_add_aaaa(r, WIRE_HDR, 5, ip) == 0)
		n++;
	/* 512 - 12 header - 18 question - 15 OPT with NSID = 467 -> 16 records of 28 */
	assert_int_equal(n, 16);
	r->tc = true;
}

static void test_records_stop_whole_at_the_limit(void **s)
{
	(void)s;
	uint8_t out[65535];
	size_t len;
	ldns_pkt *p = respond(fill_until_full, 512, out, &len);
	assert_true(len <= 512);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 16);
	assert_true(ldns_pkt_edns(p)); /* ldns keeps the OPT record out of arcount */
	ldns_pkt_free(p);
}

static void test_error_response_keeps_question_and_edns(void **s)
{
	(void)s;
	uint8_t pkt[512], out[512];
	size_t n = ldns_query("example.com.", LDNS_RR_TYPE_A, 1232, true, pkt);
	size_t len = wire_error_response(pkt, n, WIRE_SERVFAIL, out, sizeof(out));
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	assert_int_equal(ldns_pkt_qdcount(p), 1);
	assert_int_equal(ldns_pkt_id(p), 0x1234);
	assert_true(ldns_pkt_edns(p));
	assert_true(ldns_pkt_edns_do(p));
	ldns_pkt_free(p);
	assert_int_equal(wire_error_response(pkt, 5, WIRE_SERVFAIL, out, sizeof(out)), 0);
}

static void test_ede_only_in_an_opt(void **s)
{
	(void)s;
	uint8_t pkt[512], out[512];
	char text[80];
	size_t n = ldns_query("example.com.", LDNS_RR_TYPE_A, 1232, true, pkt);
	size_t len = wire_error_response_ede(pkt, n, WIRE_SERVFAIL, WIRE_EDE_NO_REACHABLE,
	                                     "no upstream answered", out, sizeof(out));
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	assert_true(ldns_pkt_edns_do(p));
	assert_int_equal(ldns_ede(p, text, sizeof(text)), 22);
	assert_string_equal(text, "no upstream answered");
	assert_int_equal(wire_find_ede(out, len), 22);
	ldns_pkt_free(p);
	/* without EDNS: no OPT, so no EDE */
	n = ldns_query("example.com.", LDNS_RR_TYPE_A, 0, false, pkt);
	len = wire_error_response_ede(pkt, n, WIRE_SERVFAIL, WIRE_EDE_NO_REACHABLE, "x", out,
	                              sizeof(out));
	assert_int_equal(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
	assert_false(ldns_pkt_edns(p));
	assert_int_equal(len, n);
	assert_int_equal(wire_find_ede(out, len), -1);
	ldns_pkt_free(p);
}

static void fill_one_with_nsid_and_ede(wire_resp_t *r)
{
	static const uint8_t ip[16] = {0xfd, 0xaa, [15] = 1};
	wire_resp_ede(r, WIRE_EDE_NOT_READY, "registry not synced yet");
	wire_add_aaaa(r, WIRE_HDR, 5, ip); /* respond() adds the OPT, NSID "host" */
}

static void test_ede_beside_nsid_and_records(void **s)
{
	(void)s;
	uint8_t out[512];
	size_t len;
	char text[80];
	ldns_pkt *p = respond(fill_one_with_nsid_and_ede, 512, out, &len);
	assert_int_equal(ldns_rr_list_rr_count(ldns_pkt_answer(p)), 1);
	assert_int_equal(ldns_ede(p, text, sizeof(text)), 14);
	assert_string_equal(text, "registry not synced yet");
	/* the NSID beside it */
	assert_int_equal(ldns_edns_option_list_get_count(ldns_pkt_edns_get_option_list(p)), 2);
	ldns_pkt_free(p);
}

/* Records up to the limit, then an EDE that no longer fits: left out, records kept. */
static void fill_full_then_ede(wire_resp_t *r)
{
	static const uint8_t ip[16] = {0xfd, 0xaa};
	while (wire_add_aaaa(r, WIRE_HDR, 5, ip) == 0)
		;
	wire_resp_ede(r, WIRE_EDE_PROHIBITED, "a text longer than the room the OPT has left");
}

static void test_ede_never_costs_a_record(void **s)
{
	(void)s;
	uint8_t out[512];
	size_t len;
	ldns_pkt *p = respond(fill_full_then_ede, 512, out, &len);
	assert_true(ldns_rr_list_rr_count(ldns_pkt_answer(p)) > 10);
	assert_true(ldns_pkt_edns(p));
	assert_int_equal(ldns_ede(p, NULL, 0), -1);
	assert_true(len <= 512);
	ldns_pkt_free(p);
}

/* An upstream's answer to pkt under id, for name (its case), with n A records. */
static size_t upstream_answer(uint16_t id, const char *name, int n, uint8_t *out)
{
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&p, name, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 0),
	                 LDNS_STATUS_OK);
	ldns_pkt_set_id(p, id);
	ldns_pkt_set_qr(p, true);
	for (int i = 0; i < n; i++) {
		char text[128];
		ldns_rr *rr = NULL;
		snprintf(text, sizeof(text), "%s 60 IN A 192.0.2.%d", name, i + 1);
		assert_int_equal(ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr);
	}
	return pkt_wire(p, out);
}

/* An EDE added to a finished answer (a stale one from the cache) keeps what is there:
 * the upstream's own EDE and the records. */
static void test_ede_added_to_a_finished_answer(void **s)
{
	(void)s;
	uint8_t pkt[512], out[600];
	char text[80];
	wire_query_t q;
	size_t n = ldns_query("example.com.", LDNS_RR_TYPE_A, 1232, true, pkt);
	assert_int_equal(wire_parse_query(pkt, n, &q), WIRE_OK);
	size_t len = wire_error_response_ede(pkt, n, WIRE_NOERROR, 0, "upstream's", out, 512);
	len = wire_add_ede(out, len, sizeof(out), &q, WIRE_EDE_STALE, "stale answer");
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
	ldns_edns_option_list *l = ldns_pkt_edns_get_option_list(p);
	assert_int_equal(ldns_edns_option_list_get_count(l), 2);
	assert_int_equal(ldns_ede(p, text, sizeof(text)), 0); /* the first one stays first */
	assert_string_equal(text, "upstream's");
	ldns_pkt_free(p);
	/* no room: unchanged */
	assert_int_equal(wire_add_ede(out, len, len + 3, &q, WIRE_EDE_STALE, "stale"), len);
	/* an upstream's answer without an OPT to an EDNS client: an OPT of ours, its DO */
	len = upstream_answer(0x1234, "example.com.", 2, out);
	len = wire_add_ede(out, len, sizeof(out), &q, WIRE_EDE_STALE, "stale answer");
	assert_int_equal(ldns_wire2pkt(&p, out, len), LDNS_STATUS_OK);
	assert_int_equal(ldns_rr_list_rr_count(ldns_pkt_answer(p)), 2);
	assert_true(ldns_pkt_edns(p));
	assert_true(ldns_pkt_edns_do(p));
	assert_int_equal(ldns_ede(p, text, sizeof(text)), 3);
	assert_string_equal(text, "stale answer");
	ldns_pkt_free(p);
	/* a client without EDNS gets none */
	n = ldns_query("example.com.", LDNS_RR_TYPE_A, 0, false, pkt);
	assert_int_equal(wire_parse_query(pkt, n, &q), WIRE_OK);
	len = upstream_answer(0x1234, "example.com.", 2, out);
	assert_int_equal(wire_add_ede(out, len, sizeof(out), &q, WIRE_EDE_STALE, "stale"), len);
}

static void test_upstream_answer_must_match_id_and_question(void **s)
{
	(void)s;
	uint8_t pkt[512], r[2048];
	size_t n = ldns_query("Www.Example.Com.", LDNS_RR_TYPE_A, 0, false, pkt);
	wire_query_t q;
	assert_int_equal(wire_parse_query(pkt, n, &q), WIRE_OK);
	size_t len = upstream_answer(0x4242, "WWW.example.COM.", 2, r);
	assert_true(wire_answers(&q, 0x4242, r, len)); /* case does not matter */
	assert_false(wire_answers(&q, 0x4243, r, len));
	len = upstream_answer(0x4242, "www.example.org.", 2, r);
	assert_false(wire_answers(&q, 0x4242, r, len));
	len = upstream_answer(0x4242, "www.example.com.", 2, r);
	r[2] &= 0x7f; /* not a response */
	assert_false(wire_answers(&q, 0x4242, r, len));
	assert_false(wire_answers(&q, 0x4242, r, 11));
}

static void test_relay_restores_the_client_view(void **s)
{
	(void)s;
	uint8_t pkt[512], r[2048], out[2048];
	size_t n = ldns_query("Www.Example.Com.", LDNS_RR_TYPE_A, 0, false, pkt);
	wire_query_t q;
	assert_int_equal(wire_parse_query(pkt, n, &q), WIRE_OK);
	size_t len = upstream_answer(0x4242, "www.example.com.", 3, r);
	size_t out_len = wire_relay(pkt, &q, r, len, 512, out);
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, out, out_len), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_id(p), 0x1234);
	assert_true(ldns_pkt_rd(p));
	assert_true(ldns_pkt_ra(p));
	assert_int_equal(ldns_pkt_ancount(p), 3);
	char *qn = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
	assert_string_equal(qn, "Www.Example.Com.");
	free(qn);
	ldns_pkt_free(p);
	/* larger than the client takes: header and question, TC */
	len = upstream_answer(0x4242, "www.example.com.", 40, r);
	out_len = wire_relay(pkt, &q, r, len, 512, out);
	assert_int_equal(out_len, n);
	assert_int_equal(ldns_wire2pkt(&p, out, out_len), LDNS_STATUS_OK);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_false(ldns_pkt_edns(p));
	ldns_pkt_free(p);
	/* a client that sent an OPT: the TC answer has one, with its DO bit */
	n = ldns_query("Www.Example.Com.", LDNS_RR_TYPE_A, 1232, true, pkt);
	assert_int_equal(wire_parse_query(pkt, n, &q), WIRE_OK);
	out_len = wire_relay(pkt, &q, r, len, 512, out);
	assert_int_equal(out_len, q.question_end + wire_opt_size(0));
	assert_int_equal(ldns_wire2pkt(&p, out, out_len), LDNS_STATUS_OK);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_true(ldns_pkt_edns(p));
	assert_true(ldns_pkt_edns_do(p));
	assert_int_equal(ldns_pkt_edns_udp_size(p), WIRE_EDNS_SIZE);
	ldns_pkt_free(p);
}

/* The OPT record loses its options and nothing else; a message without any, or one that
 * cannot be walked, is left as it is. */
static void test_strip_options_keeps_the_rest(void **s)
{
	(void)s;
	uint8_t r[2048];
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&p, "www.example.com.", LDNS_RR_TYPE_A,
	                                            LDNS_RR_CLASS_IN, 0),
	                 LDNS_STATUS_OK);
	ldns_pkt_set_qr(p, true);
	ldns_rr *rr = NULL;
	assert_int_equal(
	        ldns_rr_new_frm_str(&rr, "www.example.com. 60 IN A 192.0.2.1", 0, NULL, NULL),
	        LDNS_STATUS_OK);
	ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr);
	ldns_pkt_set_edns_udp_size(p, 1232);
	ldns_pkt_set_edns_do(p, true);
	/* COOKIE (10) with 16 bytes, then PADDING (12) with 4 */
	ldns_pkt_set_edns_data(p, ldns_rdf_new_frm_str(LDNS_RDF_TYPE_HEX,
	                                               "000a00100102030405060708a1a2a3a4a5a6a7a8"
	                                               "000c000400000000"));
	size_t len = pkt_wire(p, r);
	size_t cut = wire_strip_options(r, len);
	assert_int_equal(cut, len - 28);
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_wire2pkt(&q, r, cut), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_ancount(q), 1);
	assert_true(ldns_pkt_edns(q));
	assert_true(ldns_pkt_edns_do(q));
	assert_int_equal(ldns_pkt_edns_udp_size(q), 1232);
	ldns_rdf *opts = ldns_pkt_edns_data(q);
	assert_true(!opts || ldns_rdf_size(opts) == 0);
	ldns_pkt_free(q);
	assert_int_equal(wire_strip_options(r, cut), cut); /* nothing left to cut */
	len = upstream_answer(0x4242, "www.example.com.", 2, r);
	assert_int_equal(wire_strip_options(r, len), len); /* no OPT at all */
	r[7] = 5;                                          /* five answers claimed, two there */
	assert_int_equal(wire_strip_options(r, len), len);
}

/* An upstream's EDE stays in an answer kept for other clients; its cookie goes. */
static void test_strip_options_keeps_an_upstream_ede(void **s)
{
	(void)s;
	uint8_t r[2048];
	char text[80];
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&p, "www.example.com.", LDNS_RR_TYPE_A,
	                                            LDNS_RR_CLASS_IN, 0),
	                 LDNS_STATUS_OK);
	ldns_pkt_set_qr(p, true);
	ldns_pkt_set_rcode(p, LDNS_RCODE_SERVFAIL);
	ldns_pkt_set_edns_udp_size(p, 1232);
	/* COOKIE (10) with 8 bytes, EDE (15): 6 DNSSEC Bogus "badns", PADDING (12) with 2 */
	ldns_pkt_set_edns_data(p, ldns_rdf_new_frm_str(LDNS_RDF_TYPE_HEX, "000a00080102030405060708"
	                                                                  "000f0007"
	                                                                  "00066261646e73"
	                                                                  "000c00020000"));
	size_t len = pkt_wire(p, r); /* frees p */
	size_t cut = wire_strip_options(r, len);
	assert_int_equal(cut, len - 12 - 6);
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_wire2pkt(&q, r, cut), LDNS_STATUS_OK);
	assert_int_equal(ldns_ede(q, text, sizeof(text)), 6);
	assert_string_equal(text, "badns");
	assert_int_equal(ldns_edns_option_list_get_count(ldns_pkt_edns_get_option_list(q)), 1);
	ldns_pkt_free(q);
	assert_int_equal(wire_strip_options(r, cut), cut);
}

/* Records after the OPT whose names point past it (compression): the options become
 * padding of the same length, so every name still reads. */
static void test_strip_options_before_compressed_names_moves_nothing(void **s)
{
	(void)s;
	static const uint8_t name[] = "\3www\7example\3com", ns1[] = "\3ns1\7example\3com";
	uint8_t m[256];
	size_t n = 0;
	const uint8_t hdr[12] = {0x42, 0x42, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 3};
	memcpy(m, hdr, 12), n = 12;
	memcpy(m + n, name, sizeof(name)), n += sizeof(name); /* the trailing NUL: the root */
	const uint8_t qt[4] = {0, 1, 0, 1};
	memcpy(m + n, qt, 4), n += 4;
	/* OPT: root, type 41, size 1232, TTL 0, a COOKIE of 16 bytes */
	const uint8_t opt[11] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 20};
	memcpy(m + n, opt, 11), n += 11;
	const uint8_t cookie[4] = {0, 10, 0, 16};
	memcpy(m + n, cookie, 4), n += 4;
	memset(m + n, 0xab, 16), n += 16;
	size_t a_owner = n;
	memcpy(m + n, ns1, sizeof(ns1)), n += sizeof(ns1);
	const uint8_t a[14] = {0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};
	memcpy(m + n, a, 14), n += 14;
	m[n++] = 0xc0, m[n++] = (uint8_t)a_owner; /* the AAAA's owner: a pointer past the OPT */
	const uint8_t aaaa[10] = {0, 28, 0, 1, 0, 0, 0, 60, 0, 16};
	memcpy(m + n, aaaa, 10), n += 10;
	memset(m + n, 0, 16), m[n] = 0x20, m[n + 1] = 0x01, n += 16;
	assert_int_equal(wire_strip_options(m, n), n);
	ldns_pkt *p = NULL;
	assert_int_equal(ldns_wire2pkt(&p, m, n), LDNS_STATUS_OK);
	ldns_rr_list *ar = ldns_pkt_additional(p);
	assert_int_equal(ldns_rr_list_rr_count(ar), 2);
	for (size_t i = 0; i < 2; i++) {
		char *o = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ar, i)));
		assert_string_equal(o, "ns1.example.com.");
		free(o);
	}
	ldns_rdf *opts = ldns_pkt_edns_data(p);
	assert_non_null(opts);
	assert_int_equal(ldns_rdf_size(opts), 20);
	const uint8_t *d = ldns_rdf_data(opts);
	assert_int_equal(d[0] << 8 | d[1], 12); /* Padding */
	assert_int_equal(d[2] << 8 | d[3], 16);
	for (size_t i = 4; i < 20; i++)
		assert_int_equal(d[i], 0);
	ldns_pkt_free(p);
}

static void test_udp_size_is_the_edns_payload_clamped(void **st)
{
	(void)st;
	wire_query_t q = {.edns = false, .edns_udp = 4096};
	assert_int_equal(wire_udp_size(&q), WIRE_UDP_MIN); /* no EDNS: 512 whatever was read */
	q.edns = true;
	assert_int_equal(wire_udp_size(&q), WIRE_EDNS_SIZE);
	q.edns_udp = 1000;
	assert_int_equal(wire_udp_size(&q), 1000);
	q.edns_udp = 100;
	assert_int_equal(wire_udp_size(&q), WIRE_UDP_MIN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_query_round_trip_from_ldns),
	        cmocka_unit_test(test_edns_is_read),
	        cmocka_unit_test(test_short_and_response_packets_are_dropped),
	        cmocka_unit_test(test_question_count_must_be_one),
	        cmocka_unit_test(test_bad_names_are_formerr),
	        cmocka_unit_test(test_trailing_garbage_is_formerr),
	        cmocka_unit_test(test_two_opt_records_are_formerr),
	        cmocka_unit_test(test_edns_version_one_is_badvers),
	        cmocka_unit_test(test_edns_options),
	        cmocka_unit_test(test_opcode_other_than_query_is_notimp),
	        cmocka_unit_test(test_qtype_zero_and_unserved_meta_types_are_notimp),
	        cmocka_unit_test(test_error_response_sets_ra_only_on_query),
	        cmocka_unit_test(test_response_decodes_with_ldns),
	        cmocka_unit_test(test_txt_splits_at_255_bytes),
	        cmocka_unit_test(test_records_stop_whole_at_the_limit),
	        cmocka_unit_test(test_error_response_keeps_question_and_edns),
	        cmocka_unit_test(test_ede_only_in_an_opt),
	        cmocka_unit_test(test_ede_beside_nsid_and_records),
	        cmocka_unit_test(test_ede_never_costs_a_record),
	        cmocka_unit_test(test_ede_added_to_a_finished_answer),
	        cmocka_unit_test(test_upstream_answer_must_match_id_and_question),
	        cmocka_unit_test(test_relay_restores_the_client_view),
	        cmocka_unit_test(test_strip_options_keeps_the_rest),
	        cmocka_unit_test(test_strip_options_keeps_an_upstream_ede),
	        cmocka_unit_test(test_strip_options_before_compressed_names_moves_nothing),
	        cmocka_unit_test(test_notimp_keeps_the_opt),
	        cmocka_unit_test(test_udp_size_is_the_edns_payload_clamped),
	};
	return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
