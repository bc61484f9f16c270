/* test_metrics.c — the Prometheus text of internald's counters: every family once with
 * one HELP and one TYPE, its samples together, histograms cumulative, labels escaped,
 * the workers' counters summed, and one query's outcome (answer.c's) into the counters. */
#include "testreg.h"

#include "metrics.h"

static met_snapshot_t full(void)
{
	met_snapshot_t s;
	memset(&s, 0, sizeof(s));
	s.version = "1.2.3";
	s.revision = "v1.2.3-4-gabcdef0";
	s.workers = 4;
	s.sum.queries[MET_UDP][MET_IPV6] = 7;
	s.sum.rcode[3] = 2;
	s.sum.rcode[16] = 1;
	s.sum.form[MET_FORM_VMS] = 5;
	s.sum.wakeups = 2, s.sum.datagrams = 9;
	s.nup = 2;
	snprintf(s.up[0].addr, sizeof(s.up[0].addr), "%s", "[2001:db8::1]:53");
	snprintf(s.up[1].addr, sizeof(s.up[1].addr), "%s", "we\"ird\\");
	s.up[0].lat_bucket[0] = 1, s.up[0].lat_bucket[3] = 2, s.up[0].lat_bucket[12] = 1;
	s.up[0].lat_count = 4, s.up[0].lat_sum_ns = 3000000000u;
	s.reg.present = true, s.reg.generation = 42, s.reg.written_ns = 1500000000000000000u;
	s.reg.follows = true, s.reg.follow_seq = 99;
	s.cache.present = true, s.cache.hits = 3, s.cache.servfail = 6;
	s.sum.qtype[MET_QTYPE_AAAA] = 4;
	s.sum.dur_bucket[MET_TCP][0] = 1;
	s.dnstap.present = true, s.dnstap.dropped = 8;
	s.proc.present = true, s.proc.cpu_seconds = 1.5, s.proc.open_fds = 12;
	return s;
}

static char *render(const met_snapshot_t *s)
{
	met_buf_t b = {0};
	assert_int_equal(met_render(&b, s), 0);
	assert_non_null(b.buf);
	assert_int_equal(strlen(b.buf), b.len);
	return b.buf;
}

/* The family a sample line belongs to (a histogram's _bucket/_sum/_count are its own). */
static void family_of(const char *line, char *out, size_t cap, const char *hist)
{
	size_t n = strcspn(line, "{ ");
	snprintf(out, cap, "%.*s", (int)n, line);
	if (hist[0] && strncmp(out, hist, strlen(hist)) == 0)
		snprintf(out, cap, "%s", hist);
}

static void test_every_family_once_with_help_and_type_and_samples_together(void **st)
{
	(void)st;
	met_snapshot_t s = full();
	char *text = render(&s), *save = NULL;
	char seen[128][96];
	int nseen = 0, samples = 0;
	char cur[96] = "", hist[96] = "";
	bool help = false;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[96], type[32];
		if (sscanf(line, "# HELP %95s", name) == 1) {
			for (int i = 0; i < nseen; i++)
				if (strcmp(seen[i], name) == 0)
					fail_msg("family %s twice", name);
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", name);
			snprintf(cur, sizeof(cur), "%s", name);
			help = true;
			continue;
		}
		if (sscanf(line, "# TYPE %95s %31s", name, type) == 2) {
			assert_true(help);
			assert_string_equal(name, cur);
			help = false;
			snprintf(hist, sizeof(hist), "%s", strcmp(type, "histogram") ? "" : name);
			if (strcmp(type, "counter") == 0 && strncmp(name, "process_", 8) != 0)
				assert_non_null(strstr(name, "_total"));
			continue;
		}
		char fam[96];
		family_of(line, fam, sizeof(fam), hist);
		if (strcmp(fam, cur))
			fail_msg("sample '%s' outside its family (current %s)", line, cur);
		samples++;
	}
	assert_true(nseen > 40);
	assert_true(samples > 100);
	free(text);
}

static void test_values_and_labels(void **st)
{
	(void)st;
	met_snapshot_t s = full();
	char *t = render(&s);
	assert_non_null(
	        strstr(t, "internald_queries_total{transport=\"udp\",family=\"ipv6\"} 7\n"));
	assert_non_null(strstr(t, "internald_responses_total{rcode=\"NXDOMAIN\"} 2\n"));
	assert_non_null(strstr(t, "internald_responses_total{rcode=\"BADVERS\"} 1\n"));
	assert_null(strstr(t, "rcode=\"NOTIMP\"")); /* unseen and not one of the usual three */
	assert_non_null(strstr(t, "internald_answers_total{form=\"vms\"} 5\n"));
	assert_non_null(strstr(t, "internald_workers 4\n"));
	assert_non_null(strstr(t, "internald_udp_datagrams_per_wakeup 4.5\n"));
	assert_non_null(strstr(t, "upstream=\"we\\\"ird\\\\\"")); /* escaped */
	assert_non_null(strstr(t, "internald_registry_generation 42\n"));
	assert_non_null(strstr(t, "internald_registry_last_write_timestamp_seconds 1500000000\n"));
	assert_non_null(strstr(t, "internald_registry_follow_sequence 99\n"));
	assert_non_null(strstr(t, "internald_cache_hits_total 3\n"));
	assert_non_null(strstr(t, "internald_dnstap_dropped_total 8\n"));
	assert_non_null(strstr(
	        t, "internald_build_info{version=\"1.2.3\",revision=\"v1.2.3-4-gabcdef0\"} 1\n"));
	assert_non_null(strstr(t, "process_cpu_seconds_total 1.50\n"));
	assert_non_null(strstr(t, "process_open_fds 12\n"));
	free(t);
}

static void test_histogram_is_cumulative_with_inf_equal_to_count(void **st)
{
	(void)st;
	met_snapshot_t s = full();
	char *t = render(&s);
	const char *u = "upstream=\"[2001:db8::1]:53\"";
	char want[256];
	snprintf(want, sizeof(want),
	         "internald_upstream_latency_seconds_bucket{%s,le=\"0.0005\"} 1\n", u);
	assert_non_null(strstr(t, want));
	snprintf(want, sizeof(want),
	         "internald_upstream_latency_seconds_bucket{%s,le=\"0.005\"} 3\n", u);
	assert_non_null(strstr(t, want));
	snprintf(want, sizeof(want), "internald_upstream_latency_seconds_bucket{%s,le=\"2.5\"} 3\n",
	         u);
	assert_non_null(strstr(t, want));
	snprintf(want, sizeof(want),
	         "internald_upstream_latency_seconds_bucket{%s,le=\"+Inf\"} 4\n", u);
	assert_non_null(strstr(t, want));
	snprintf(want, sizeof(want), "internald_upstream_latency_seconds_sum{%s} 3.000000000\n", u);
	assert_non_null(strstr(t, want));
	free(t);
}

static void test_latency_bucket_bounds(void **st)
{
	(void)st;
	assert_int_equal(met_lat_bucket(0), 0);
	assert_int_equal(met_lat_bucket(500000), 0); /* le="0.0005" is inclusive */
	assert_int_equal(met_lat_bucket(500001), 1);
	assert_int_equal(met_lat_bucket(1000000000), 10);
	assert_int_equal(met_lat_bucket(2600000000u), MET_LAT_BUCKETS); /* +Inf */
}

static void test_absent_parts_leave_their_families_out(void **st)
{
	(void)st;
	met_snapshot_t s;
	memset(&s, 0, sizeof(s));
	char *t = render(&s);
	assert_null(strstr(t, "internald_registry_"));
	assert_null(strstr(t, "internald_cache_"));
	assert_null(strstr(t, "internald_dnstap_"));
	assert_null(strstr(t, "internald_upstream_"));
	assert_null(strstr(t, "process_"));
	assert_non_null(strstr(t, "internald_build_info{version=\"unknown\",revision=\"\"} 1\n"));
	free(t);
}

static void test_worker_counters_are_summed(void **st)
{
	(void)st;
	met_worker_t a, b, sum;
	memset(&a, 0, sizeof(a)), memset(&b, 0, sizeof(b)), memset(&sum, 0, sizeof(sum));
	MET_INC(a.queries[MET_TCP][MET_IPV4]);
	MET_ADD(b.queries[MET_TCP][MET_IPV4], 4);
	MET_ADD(a.datagrams, 10);
	MET_INC(b.dropped[MET_DROP_QR]);
	MET_INC(b.tcp_closed_cap);
	met_worker_add(&sum, &a);
	met_worker_add(&sum, &b);
	assert_int_equal(sum.queries[MET_TCP][MET_IPV4], 5);
	assert_int_equal(sum.datagrams, 10);
	assert_int_equal(sum.dropped[MET_DROP_QR], 1);
	assert_int_equal(sum.tcp_closed_cap, 1);
}

/* ---- met_count_answer: what answer.c decided, into the counters -------------------------- */

/* An answer header (12 bytes) with TC set or not. */
static void header(uint8_t out[12], bool tc)
{
	memset(out, 0, 12);
	out[2] = (uint8_t)(0x80 | (tc ? 0x02 : 0));
}

static ans_ctx_t decided(int rcode, int form, int refused)
{
	ans_ctx_t a;
	memset(&a, 0, sizeof(a));
	a.last_rcode = rcode, a.last_form = form, a.last_refused = refused;
	return a;
}

static void test_each_refused_reason_of_answer_has_its_label(void **st)
{
	(void)st;
	static const struct {
		int ans, met;
	} cases[] = {
	        {ANS_REFUSED_NOT_ALLOWED, MET_REFUSED_NOT_ALLOWED},
	        {ANS_REFUSED_OTHER_ORG, MET_REFUSED_OTHER_ORG},
	        {ANS_REFUSED_CLASS, MET_REFUSED_CLASS},
	        {ANS_REFUSED_TRANSFER, MET_REFUSED_TRANSFER},
	        {ANS_REFUSED_NO_ORG, MET_REFUSED_NO_ORG},
	        {ANS_REFUSED_NO_FORWARD, MET_REFUSED_NO_UPSTREAM},
	};
	uint8_t q[12] = {0}, out[12];
	header(out, false);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		met_worker_t m;
		memset(&m, 0, sizeof(m));
		ans_ctx_t a = decided(WIRE_REFUSED, -1, cases[i].ans);
		met_count_answer(&m, &a, false, ANS_REPLY, q, sizeof(q), out, sizeof(out));
		for (int k = 0; k < MET_REFUSED_REASONS; k++)
			assert_int_equal(m.refused[k], k == cases[i].met ? 1 : 0);
		assert_int_equal(m.rcode[WIRE_REFUSED], 1);
	}
}

static void test_an_answer_counts_its_rcode_and_form_and_tc_over_udp_only(void **st)
{
	(void)st;
	met_worker_t m;
	memset(&m, 0, sizeof(m));
	uint8_t q[12] = {0}, out[12];
	header(out, true);
	ans_ctx_t a = decided(WIRE_NOERROR, NAME_VMS, -1);
	met_count_answer(&m, &a, false, ANS_REPLY, q, sizeof(q), out, sizeof(out));
	met_count_answer(&m, &a, true, ANS_REPLY, q, sizeof(q), out, sizeof(out));
	assert_int_equal(m.rcode[WIRE_NOERROR], 2);
	assert_int_equal(m.form[MET_FORM_VMS], 2);
	assert_int_equal(m.truncated, 1);
	for (int k = 0; k < MET_REFUSED_REASONS; k++)
		assert_int_equal(m.refused[k], 0);
	a = decided(WIRE_NXDOMAIN, NAME_NX, -1);
	met_count_answer(&m, &a, false, ANS_REPLY, q, sizeof(q), out, sizeof(out));
	assert_int_equal(m.form[MET_FORM_OTHER], 1);
	a = decided(WIRE_NXDOMAIN, NAME_APP, -1); /* an app name of no app: "other", not "app" */
	met_count_answer(&m, &a, false, ANS_REPLY, q, sizeof(q), out, sizeof(out));
	assert_int_equal(m.form[MET_FORM_OTHER], 2);
	assert_int_equal(m.form[MET_FORM_APP], 0);
	a = decided(WIRE_FORMERR, -1, -1); /* no form: none counted */
	met_count_answer(&m, &a, false, ANS_REPLY, q, sizeof(q), out, sizeof(out));
	assert_int_equal(m.rcode[WIRE_FORMERR], 1);
	assert_int_equal(m.form[MET_FORM_VMS] + m.form[MET_FORM_OTHER], 4);
}

static void test_drops_say_why_and_forwards_and_empty_answers_count_nothing(void **st)
{
	(void)st;
	met_worker_t m, zero;
	memset(&m, 0, sizeof(m)), memset(&zero, 0, sizeof(zero));
	ans_ctx_t a = decided(-1, -1, -1);
	uint8_t q[12] = {0}, out[12];
	header(out, false);
	met_count_answer(&m, &a, false, ANS_FORWARD, q, sizeof(q), out, 0);
	met_count_answer(&m, &a, false, ANS_REPLY, q, sizeof(q), out, 0);
	assert_memory_equal(&m, &zero, sizeof(m));
	met_count_answer(&m, &a, false, ANS_DROP, q, 5, NULL, 0);
	q[2] = 0x80;
	met_count_answer(&m, &a, false, ANS_DROP, q, sizeof(q), NULL, 0);
	q[2] = 0;
	met_count_answer(&m, &a, true, ANS_DROP, q, sizeof(q), NULL, 0);
	assert_int_equal(m.dropped[MET_DROP_SHORT], 1);
	assert_int_equal(m.dropped[MET_DROP_QR], 1);
	assert_int_equal(m.dropped[MET_DROP_UNPARSEABLE], 1);
	assert_int_equal(m.dropped[MET_DROP_OVERSIZE], 0);
}

static void test_a_cached_servfail_is_not_a_hit(void **st)
{
	(void)st;
	met_snapshot_t s = full();
	char *text = render(&s);
	assert_non_null(strstr(text, "\ninternald_cache_hits_total 3\n"));
	assert_non_null(strstr(text, "\n# TYPE internald_cache_servfail_total counter\n"
	                             "internald_cache_servfail_total 6\n"));
	free(text);
}

static void test_queries_count_by_type_forwarded_too_and_others_as_other(void **st)
{
	(void)st;
	met_worker_t m;
	memset(&m, 0, sizeof(m));
	uint8_t q[12] = {0}, out[12];
	header(out, false);
	const uint16_t types[] = {1, 28, 16, 12, 6, 2, 33, 255, 15, 65};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		ans_ctx_t a = decided(WIRE_NOERROR, NAME_VMS, -1);
		a.q.has_question = true, a.q.qtype = types[i];
		met_count_answer(&m, &a, false, i % 2 ? ANS_FORWARD : ANS_REPLY, q, sizeof(q), out,
		                 sizeof(out));
	}
	ans_ctx_t a = decided(WIRE_FORMERR, -1, -1); /* no question read: no type */
	met_count_answer(&m, &a, false, ANS_REPLY, q, sizeof(q), out, sizeof(out));
	for (int k = 0; k < MET_QTYPE_OTHER; k++)
		assert_int_equal(m.qtype[k], 1);
	assert_int_equal(m.qtype[MET_QTYPE_OTHER], 2);
	met_snapshot_t s;
	memset(&s, 0, sizeof(s));
	s.sum = m;
	char *text = render(&s);
	const char *const want[] = {"A", "AAAA", "TXT", "PTR", "SOA", "NS", "SRV", "ANY"};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char line[96];
		snprintf(line, sizeof(line), "\ninternald_queries_by_type_total{type=\"%s\"} 1\n",
		         want[i]);
		assert_non_null(strstr(text, line));
	}
	assert_non_null(strstr(text, "\ninternald_queries_by_type_total{type=\"other\"} 2\n"));
	free(text);
}

static void test_a_batch_counts_each_answer_with_the_batch_time_by_transport(void **st)
{
	(void)st;
	met_worker_t m;
	memset(&m, 0, sizeof(m));
	met_count_batch(&m, MET_UDP, 3, 40000);     /* 40 us: le 0.00005 */
	met_count_batch(&m, MET_UDP, 0, 5000000);   /* no answer sent: nothing */
	met_count_batch(&m, MET_UDP, 1, 999999999); /* past every bound: +Inf only */
	met_count_batch(&m, MET_TCP, 2, 10000);     /* on the first bound: le 1e-05 */
	assert_int_equal(met_dur_bucket(10000), 0);
	assert_int_equal(met_dur_bucket(10001), 1);
	assert_int_equal(met_dur_bucket(300000000), MET_DUR_BUCKETS);
	met_snapshot_t s;
	memset(&s, 0, sizeof(s));
	s.sum = m;
	char *text = render(&s);
	const char *const want[] = {
	        "internald_request_duration_seconds_bucket{transport=\"udp\",le=\"2.5e-05\"} 0\n",
	        "internald_request_duration_seconds_bucket{transport=\"udp\",le=\"5e-05\"} 3\n",
	        "internald_request_duration_seconds_bucket{transport=\"udp\",le=\"0.25\"} 3\n",
	        "internald_request_duration_seconds_bucket{transport=\"udp\",le=\"+Inf\"} 4\n",
	        "internald_request_duration_seconds_sum{transport=\"udp\"} 1.000119999\n",
	        "internald_request_duration_seconds_count{transport=\"udp\"} 4\n",
	        "internald_request_duration_seconds_bucket{transport=\"tcp\",le=\"1e-05\"} 2\n",
	        "internald_request_duration_seconds_bucket{transport=\"tcp\",le=\"+Inf\"} 2\n",
	        "internald_request_duration_seconds_sum{transport=\"tcp\"} 0.000020000\n",
	        "internald_request_duration_seconds_count{transport=\"tcp\"} 2\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(text, want[i]))
			fail_msg("missing: %s", want[i]);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_every_family_once_with_help_and_type_and_samples_together),
	        cmocka_unit_test(test_values_and_labels),
	        cmocka_unit_test(test_histogram_is_cumulative_with_inf_equal_to_count),
	        cmocka_unit_test(test_latency_bucket_bounds),
	        cmocka_unit_test(test_absent_parts_leave_their_families_out),
	        cmocka_unit_test(test_worker_counters_are_summed),
	        cmocka_unit_test(test_each_refused_reason_of_answer_has_its_label),
	        cmocka_unit_test(test_an_answer_counts_its_rcode_and_form_and_tc_over_udp_only),
	        cmocka_unit_test(test_drops_say_why_and_forwards_and_empty_answers_count_nothing),
	        cmocka_unit_test(test_a_cached_servfail_is_not_a_hit),
	        cmocka_unit_test(test_queries_count_by_type_forwarded_too_and_others_as_other),
	        cmocka_unit_test(test_a_batch_counts_each_answer_with_the_batch_time_by_transport),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
