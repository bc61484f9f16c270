/*
 * test_dnstap.c — the dnstap encoding, decoded back with protobuf-c's own unpack from
 * the schema's generated code (the test is the one other reader of dnstap.pb-c.h), and
 * the writer's start, refusal and drop-counting without a collector.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dnstap.h"
#include "dnstap.pb-c.h"

/* A query for web.internal AAAA, ID 0x1234. */
static const uint8_t query[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0, 0,   0,   0,
                                0,    0,    3,    'w',  'e', 'b', 8, 'i', 'n', 't',
                                'e',  'r',  'n',  'a',  'l', 0,   0, 28,  0,   1};

static Dnstap__Dnstap *round_trip(const dt_msg_t *m, const char *id, const char *ver)
{
	uint8_t buf[DT_FRAME_MAX];
	size_t len = dt_encode(m, id, ver, buf, sizeof(buf));
	assert_true(len > 0);
	Dnstap__Dnstap *d = dnstap__dnstap__unpack(NULL, len, buf);
	assert_non_null(d);
	assert_int_equal(d->type, DNSTAP__DNSTAP__TYPE__MESSAGE);
	assert_non_null(d->message);
	return d;
}

static void test_client_query_over_udp_v6_has_every_field(void **s)
{
	(void)s;
	dt_msg_t m = {.type = DT_CLIENT_QUERY,
	              .query_from = {.addr = {[15] = 1}, .port = 40000},
	              .response_from = {.addr = {0xfd, 0xaa, [15] = 3}, .port = 53},
	              .query_time = {1700000000, 123456789},
	              .query = query,
	              .query_len = sizeof(query)};
	Dnstap__Dnstap *d = round_trip(&m, "host-1", "internald 1.0");
	Dnstap__Message *msg = d->message;
	assert_true(d->has_identity && d->has_version);
	assert_memory_equal(d->identity.data, "host-1", 6);
	assert_int_equal(d->version.len, strlen("internald 1.0"));
	assert_int_equal(msg->type, DNSTAP__MESSAGE__TYPE__CLIENT_QUERY);
	assert_int_equal(msg->socket_family, DNSTAP__SOCKET_FAMILY__INET6);
	assert_true(msg->has_socket_protocol);
	assert_int_equal(msg->socket_protocol, DNSTAP__SOCKET_PROTOCOL__UDP);
	assert_int_equal(msg->query_address.len, 16);
	assert_int_equal(msg->query_address.data[15], 1);
	assert_int_equal(msg->query_port, 40000);
	assert_int_equal(msg->response_address.len, 16);
	assert_int_equal(msg->response_address.data[0], 0xfd);
	assert_int_equal(msg->response_port, 53);
	assert_true(msg->has_query_time_sec && msg->has_query_time_nsec);
	assert_int_equal(msg->query_time_sec, 1700000000);
	assert_int_equal(msg->query_time_nsec, 123456789);
	assert_true(msg->has_query_message);
	assert_int_equal(msg->query_message.len, sizeof(query));
	assert_memory_equal(msg->query_message.data, query, sizeof(query));
	assert_false(msg->has_response_message);
	assert_false(msg->has_response_time_sec);
	dnstap__dnstap__free_unpacked(d, NULL);
}

static void test_v4_mapped_ends_are_written_as_inet_over_tcp(void **s)
{
	(void)s;
	uint8_t resp[sizeof(query)];
	memcpy(resp, query, sizeof(query));
	resp[2] |= 0x80;
	dt_msg_t m = {.type = DT_CLIENT_RESPONSE,
	              .tcp = true,
	              .query_from = {.addr = {[10] = 0xff, 0xff, 127, 0, 0, 1}, .port = 1234},
	              .response_from = {.addr = {[10] = 0xff, 0xff, 127, 0, 0, 2}, .port = 5353},
	              .response_time = {1700000001, 5},
	              .response = resp,
	              .response_len = sizeof(resp)};
	Dnstap__Dnstap *d = round_trip(&m, NULL, NULL);
	Dnstap__Message *msg = d->message;
	assert_false(d->has_identity);
	assert_false(d->has_version);
	assert_int_equal(msg->type, DNSTAP__MESSAGE__TYPE__CLIENT_RESPONSE);
	assert_int_equal(msg->socket_family, DNSTAP__SOCKET_FAMILY__INET);
	assert_int_equal(msg->socket_protocol, DNSTAP__SOCKET_PROTOCOL__TCP);
	assert_int_equal(msg->query_address.len, 4);
	assert_memory_equal(msg->query_address.data, ((uint8_t[]){127, 0, 0, 1}), 4);
	assert_memory_equal(msg->response_address.data, ((uint8_t[]){127, 0, 0, 2}), 4);
	assert_int_equal(msg->response_port, 5353);
	assert_false(msg->has_query_time_sec);
	assert_int_equal(msg->response_time_sec, 1700000001);
	assert_int_equal(msg->response_time_nsec, 5);
	assert_false(msg->has_query_message);
	assert_memory_equal(msg->response_message.data, resp, sizeof(resp));
	dnstap__dnstap__free_unpacked(d, NULL);
}

static void test_forwarder_query_without_local_end_leaves_it_out(void **s)
{
	(void)s;
	dt_msg_t m = {.type = DT_FORWARDER_QUERY,
	              .response_from = {.addr = {[15] = 1}, .port = 53},
	              .query_time = {1700000000, 0},
	              .query = query,
	              .query_len = sizeof(query)};
	Dnstap__Dnstap *d = round_trip(&m, "x", "y");
	Dnstap__Message *msg = d->message;
	assert_int_equal(msg->type, DNSTAP__MESSAGE__TYPE__FORWARDER_QUERY);
	assert_false(msg->has_query_address);
	assert_false(msg->has_query_port);
	assert_true(msg->has_socket_family);
	assert_int_equal(msg->socket_family, DNSTAP__SOCKET_FAMILY__INET6);
	assert_int_equal(msg->response_port, 53);
	dnstap__dnstap__free_unpacked(d, NULL);
	m.type = DT_FORWARDER_RESPONSE;
	d = round_trip(&m, "x", "y");
	assert_int_equal(d->message->type, DNSTAP__MESSAGE__TYPE__FORWARDER_RESPONSE);
	dnstap__dnstap__free_unpacked(d, NULL);
}

static void test_a_frame_that_does_not_fit_is_refused(void **s)
{
	(void)s;
	uint8_t buf[40];
	dt_msg_t m = {.type = DT_CLIENT_QUERY, .query = query, .query_len = sizeof(query)};
	assert_int_equal(dt_encode(&m, "identity", "version", buf, sizeof(buf)), 0);
	assert_true(dt_encode(&m, NULL, NULL, buf, sizeof(buf)) > 0);
}

static void test_bad_targets_are_refused_by_name(void **s)
{
	(void)s;
	dt_t *d = NULL;
	char err[256] = "";
	assert_int_equal(dt_create(&d, "tcp:127.0.0.1:6000", 1, "h", "v", err, sizeof(err)),
	                 -EINVAL);
	assert_non_null(strstr(err, "want unix:PATH"));
	assert_int_equal(dt_create(&d, "unix:", 1, "h", "v", err, sizeof(err)), -EINVAL);
	char longp[200];
	memset(longp, 'a', sizeof(longp));
	memcpy(longp, "unix:/", 6);
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(dt_create(&d, longp, 1, "h", "v", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "longer than"));
	assert_null(d);
}

/* No collector listens: logging never blocks; what cannot be queued is counted. */
static void test_without_a_collector_logging_goes_on_and_counts(void **s)
{
	(void)s;
	dt_t *d = NULL;
	char err[256] = "", path[64];
	snprintf(path, sizeof(path), "unix:/tmp/internald-test-dnstap-%d.sock", (int)getpid());
	assert_int_equal(dt_create(&d, path, 2, "h", "v", err, sizeof(err)), 0);
	dt_worker_t *w = dt_worker(d, 1);
	assert_non_null(w);
	assert_null(dt_worker(d, 2));
	dt_end_t a = {.addr = {[15] = 1}, .port = 1}, b = {.addr = {[15] = 1}, .port = 53};
	for (int i = 0; i < 4 * DT_QUEUE; i++)
		dt_log_client_query(w, false, &a, &b, query, sizeof(query), NULL);
	static uint8_t big[3 * DT_FRAME_MAX]; /* larger than a pool buffer: its own */
	dt_log_client_response(w, true, &a, &b, NULL, big, sizeof(big));
	dt_stats_t st;
	dt_stats(d, &st);
	assert_int_equal(st.sent + st.dropped, 4 * DT_QUEUE + 1);
	assert_true(st.sent >= 1);
	assert_int_equal(dt_dropped(d), st.dropped);
	dt_log(NULL, &(dt_msg_t){.type = DT_CLIENT_QUERY}); /* no handle: nothing */
	dt_free(d);
	assert_int_equal(dt_dropped(NULL), 0);
}

/*
 * A collector that listens but never accepts nor reads: the I/O thread hangs in the
 * Frame Streams handshake, the worker's queue fills, and every frame past it is dropped
 * and counted at once; dt_free does not wait for it past its 2 seconds.
 */
static void test_a_collector_that_never_reads_gets_frames_dropped_not_waited_for(void **s)
{
	(void)s;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "/tmp/internald-test-stuck-%d.sock",
	         (int)getpid());
	unlink(sun.sun_path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 8), 0);
	char target[sizeof(sun.sun_path) + 8], err[256] = "";
	snprintf(target, sizeof(target), "unix:%s", sun.sun_path);
	dt_t *d = NULL;
	assert_int_equal(dt_create(&d, target, 1, "h", "v", err, sizeof(err)), 0);
	usleep(200 * 1000); /* let the I/O thread connect and wait for the handshake */
	dt_worker_t *w = dt_worker(d, 0);
	dt_end_t a = {.addr = {[15] = 1}, .port = 1}, b = {.addr = {[15] = 1}, .port = 53};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 4 * DT_QUEUE; i++)
		dt_log_client_query(w, false, &a, &b, query, sizeof(query), NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	dt_stats_t st;
	dt_stats(d, &st);
	assert_int_equal(st.sent + st.dropped, 4 * DT_QUEUE);
	assert_true(st.sent <= DT_QUEUE);
	assert_true(st.dropped >= 3 * DT_QUEUE);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	assert_true(ms < 500); /* no waiting: microseconds per frame, even under sanitizers */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	dt_free(d);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec <= 3);
	close(fd);
	unlink(sun.sun_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_client_query_over_udp_v6_has_every_field),
	        cmocka_unit_test(test_v4_mapped_ends_are_written_as_inet_over_tcp),
	        cmocka_unit_test(test_forwarder_query_without_local_end_leaves_it_out),
	        cmocka_unit_test(test_a_frame_that_does_not_fit_is_refused),
	        cmocka_unit_test(test_bad_targets_are_refused_by_name),
	        cmocka_unit_test(test_without_a_collector_logging_goes_on_and_counts),
	        cmocka_unit_test(
	                test_a_collector_that_never_reads_gets_frames_dropped_not_waited_for),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
