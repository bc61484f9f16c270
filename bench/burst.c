/*
 * bench/burst — a closed-loop UDP client that sends its queries in bursts of exactly N:
 * N queries in one sendmmsg, then it waits for the N answers (1 s at most) before the
 * next burst. A server woken by a burst finds N datagrams waiting, so its CPU per query
 * at burst size N is (cost per packet) + (cost per wake-up) / N; bench/run measures it at
 * several N to tell the two apart, which dnsperf's own pacing does not.
 *
 *   build/burst ADDR PORT N SECONDS QUERYFILE   prints "sent answered"
 *   build/burst --syscall                       prints the CPU of one system call here,
 *                                               "total_us user_us kernel_us"
 *
 * QUERYFILE is a dnsperf query file ("name TYPE" a line). Queries are built once with
 * ldns; an answer counts when it is a response (QR) with an ID of the current burst not
 * seen before.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <ldns/ldns.h>

#define BURST_MAX  1024
#define QUERY_MAX  100000
#define ANSWER_BUF 4096

typedef struct {
	uint8_t *wire;
	size_t len;
} query_t;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double tv_us(struct timeval tv)
{
	return (double)tv.tv_sec * 1e6 + (double)tv.tv_usec;
}

/* The CPU one cheap system call costs on this machine: getppid() in a loop. */
static int syscall_cost(void)
{
	const long n = 2000000;
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	getrusage(RUSAGE_SELF, &r1);
	double u = (tv_us(r1.ru_utime) - tv_us(r0.ru_utime)) / (double)n;
	double s = (tv_us(r1.ru_stime) - tv_us(r0.ru_stime)) / (double)n;
	printf("%.3f %.3f %.3f\n", u + s, u, s);
	return 0;
}

/* Reads "name TYPE" lines into wire-format queries; returns how many, 0 on error. */
static size_t load(const char *path, query_t *q, size_t max)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "burst: %s: %s\n", path, strerror(errno));
		return 0;
	}
	char name[256], type[32];
	size_t n = 0;
	while (n < max && fscanf(f, "%255s %31s", name, type) == 2) {
		ldns_rdf *dname = ldns_dname_new_frm_str(name);
		ldns_rr_type t = ldns_get_rr_type_by_name(type);
		if (!dname || !t) {
			fprintf(stderr, "burst: %s: bad line '%s %s'\n", path, name, type);
			ldns_rdf_deep_free(dname);
			n = 0;
			break;
		}
		ldns_pkt *p = ldns_pkt_query_new(dname, t, LDNS_RR_CLASS_IN, LDNS_RD);
		if (!p || ldns_pkt2wire(&q[n].wire, p, &q[n].len) != LDNS_STATUS_OK) {
			fprintf(stderr, "burst: cannot encode '%s %s'\n", name, type);
			ldns_pkt_free(p);
			n = 0;
			break;
		}
		ldns_pkt_free(p);
		n++;
	}
	fclose(f);
	if (n == 0)
		fprintf(stderr, "burst: %s: no queries\n", path);
	return n;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--syscall") == 0)
		return syscall_cost();
	if (argc != 6) {
		fprintf(stderr, "usage: burst ADDR PORT N SECONDS QUERYFILE | burst --syscall\n");
		return 2;
	}
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	int n = atoi(argv[3]);
	double secs = atof(argv[4]);
	if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1 || n < 1 || n > BURST_MAX || secs <= 0) {
		fprintf(stderr, "burst: bad ADDR, N (1..%d) or SECONDS\n", BURST_MAX);
		return 2;
	}
	static query_t q[QUERY_MAX];
	size_t nq = load(argv[5], q, QUERY_MAX);
	if (!nq)
		return 1;

	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	int rcvbuf = 4 << 20;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0 ||
	    connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
		fprintf(stderr, "burst: socket: %s\n", strerror(errno));
		return 1;
	}

	static struct mmsghdr m[BURST_MAX];
	static struct iovec iov[BURST_MAX];
	static uint8_t ans[BURST_MAX][ANSWER_BUF];
	static uint8_t seen[BURST_MAX];
	unsigned long long sent = 0, answered = 0;
	size_t next = 0;
	uint16_t base = 0;
	double end = now() + secs;
	do {
		for (int i = 0; i < n; i++) {
			query_t *qq = &q[next++ % nq];
			uint16_t id = (uint16_t)(base + i);
			qq->wire[0] = (uint8_t)(id >> 8), qq->wire[1] = (uint8_t)id;
			iov[i] = (struct iovec){qq->wire, qq->len};
			m[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
		}
		int k = sendmmsg(fd, m, (unsigned)n, 0);
		if (k <= 0) {
			fprintf(stderr, "burst: send: %s\n", strerror(errno));
			return 1;
		}
		sent += (unsigned)k;
		memset(seen, 0, (size_t)n);
		int want = k;
		while (want > 0) {
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			if (poll(&pfd, 1, 1000) <= 0)
				break; /* lost: the next burst goes on */
			for (int i = 0; i < want; i++) {
				iov[i] = (struct iovec){ans[i], ANSWER_BUF};
				m[i] = (struct mmsghdr){
				        .msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
			}
			int got = recvmmsg(fd, m, (unsigned)want, MSG_DONTWAIT, NULL);
			for (int i = 0; i < got; i++) {
				uint16_t off = (uint16_t)(((ans[i][0] << 8) | ans[i][1]) - base);
				if (m[i].msg_len < 12 || !(ans[i][2] & 0x80) || off >= k ||
				    seen[off])
					continue;
				seen[off] = 1;
				answered++;
				want--;
			}
		}
		base = (uint16_t)(base + k);
	} while (now() < end);
	printf("%llu %llu\n", sent, answered);
	for (size_t i = 0; i < nq; i++)
		free(q[i].wire);
	close(fd);
	return 0;
}
