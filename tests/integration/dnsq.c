/*
 * dnsq — the integration suite's own client, built on ldns (independent of internald's
 * codec). Every mode is bounded in packets and time and talks to one address.
 *
 *   dnsq query [--tcp] [--edns N] [--nsid] ADDR PORT NAME TYPE
 *       one query; prints "rcode=X flags=... an=N ns=N" (with an OPT: edns=, nsid=,
 *       and ede=CODE:TEXT for each Extended DNS Error) then the answer records
 *   dnsq raw [--tcp] ADDR PORT HEX
 *       sends the bytes as they are; prints "rcode=X an=N qd=N" or "silence"
 *   dnsq storm ADDR PORT COUNT SEED
 *       COUNT random and mutated datagrams (no waiting for answers), then exits 0
 *   dnsq idle ADDR PORT COUNT SECONDS
 *       opens COUNT TCP connections, holds them SECONDS, prints how many the server
 *       closed ("closed=N")
 *   dnsq trickle [--from SRC] ADDR PORT COUNT SECONDS INTERVAL_MS HEX
 *       opens COUNT TCP connections (from the address SRC), each sending the next byte
 *       of HEX every INTERVAL_MS (never more than HEX), holds them SECONDS; prints
 *       "refused=N closed=N open=N" (refused: not connected, or closed within 3 s)
 *   dnsq flood [--from SRC] ADDR PORT COUNT NAME_FMT WAIT_MS
 *       UDP from one socket: COUNT A queries for NAME_FMT (%d: the query's number), as
 *       fast as they go, then reads answers for WAIT_MS; prints "sent=N answered=N
 *       servfail=N"
 *   dnsq partial ADDR PORT HEX SECONDS
 *       TCP: sends the raw bytes (a frame never completed), prints "closed after N ms"
 *       when the server closes, or "open" after SECONDS
 *   dnsq noread ADDR PORT SECONDS [NAME TYPE]
 *       TCP: one query padded to 20 kB (EDNS padding: it grows the server's read
 *       buffer), then pipelines queries (web.internal AAAA) for SECONDS, never reading
 *       an answer; prints "sent=N"
 *   dnsq blackhole ADDR PORT SECONDS
 *       an upstream that never answers: reads UDP and TCP and drops everything
 *   dnsq liar ADDR PORT SECONDS
 *       an upstream that answers each UDP query first with a wrong ID, then from
 *       another port, then for another name, and only then rightly (A 192.0.2.99)
 *   dnsq counter ADDR PORT SECONDS DELAY_MS LOG
 *       a counting upstream (UDP): appends "NAME TYPE edns=E do=D cd=C size=S opts=N"
 *       (S, N: the OPT's payload size and number of options) to LOG for each query it
 *       sees and answers it DELAY_MS later: names whose first label starts
 *       with "nx": NXDOMAIN with an SOA of TTL 300 and MINIMUM 2; "t<N>-...": an A
 *       record of TTL N; "sf": SERVFAIL; "flip": an A record of TTL 1 the first time
 *       such a name is asked, SERVFAIL after; "drop": never answered; otherwise TTL 60.
 *       The A record is 10.0.X.Y for its Nth query (X.Y = N), so a cached answer is
 *       told apart from a fresh one.
 *       "ede...": with EDNS in the query, an OPT carrying its own EDE 17 "by upstream".
 *   dnsq same ADDR PORT NAME TYPE COUNT [WAIT_MS]
 *       COUNT identical queries at once, each from its own socket (port); prints
 *       "answered=N" after every answer came or WAIT_MS (5000) passed
 *   dnsq tcpstall ADDR PORT SECONDS LOG
 *       a TCP upstream whose first connection is accepted and never answered (a silent
 *       peer); every later one answers each query with A 192.0.2.7. Appends "accept"
 *       to LOG for each connection
 *   dnsq pipeline [--halfclose|--noread] ADDR PORT COUNT NAME_FMT SECONDS
 *       TCP: COUNT A queries in one write, the names NAME_FMT with %d the query's number;
 *       --halfclose then shuts its sending side; reads answers for up to SECONDS (with
 *       --noread holds the connection that long, reading nothing); prints "answered=N"
 *   dnsq zeroport ADDR PORT NAME TYPE
 *       one UDP query over IPv4 from source port 0, through a raw socket (root): a
 *       client the server's reply cannot go to
 *   dnsq every ADDR PORT NAME TYPE INTERVAL_MS FOR_MS
 *       asks NAME TYPE over UDP every INTERVAL_MS for FOR_MS, from one process (no
 *       program start between two queries, which takes a busy machine hundreds of
 *       milliseconds); prints a line per answer: "MS TTL RDATA" of its first answer
 *       record (MS: since the first query was sent; "MS - -" for an answer without one)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int addr_of(const char *host, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)atoi(port));
		*len = sizeof(*a6);
		return 0;
	}
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)atoi(port));
		*len = sizeof(*a4);
		return 0;
	}
	fprintf(stderr, "dnsq: bad address %s\n", host);
	return -1;
}

/* A mode's arguments: exactly want of them, the first two an address and a port. */
static int target(int argc, char **argv, int want, struct sockaddr_storage *ss, socklen_t *sl)
{
	return argc == want ? addr_of(argv[0], argv[1], ss, sl) : -1;
}

/* Sends msg and waits up to 2 s for one answer; returns its length, 0 on silence. */
static ssize_t exchange(const struct sockaddr_storage *ss, socklen_t sl, bool tcp,
                        const uint8_t *msg, size_t len, uint8_t *ans, size_t cap)
{
	int fd = socket(ss->ss_family, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (const struct sockaddr *)ss, sl)) {
		perror("dnsq: connect");
		exit(2);
	}
	ssize_t n = 0;
	if (tcp) {
		uint8_t *framed = malloc(len + 2);
		framed[0] = (uint8_t)(len >> 8), framed[1] = (uint8_t)len;
		memcpy(framed + 2, msg, len);
		if (send(fd, framed, len + 2, MSG_NOSIGNAL) < 0)
			n = -1;
		free(framed);
	} else if (send(fd, msg, len, 0) < 0) {
		n = -1;
	}
	struct pollfd p = {fd, POLLIN, 0};
	size_t got = 0;
	uint8_t buf[65537];
	while (n >= 0 && poll(&p, 1, 2000) == 1) {
		ssize_t r = recv(fd, tcp ? buf + got : ans, tcp ? sizeof(buf) - got : cap, 0);
		if (r <= 0)
			break;
		if (!tcp) {
			n = r;
			break;
		}
		got += (size_t)r;
		if (got >= 2 && got >= 2 + (size_t)(buf[0] << 8 | buf[1])) {
			n = (ssize_t)(buf[0] << 8 | buf[1]);
			if ((size_t)n > cap)
				n = (ssize_t)cap;
			memcpy(ans, buf + 2, (size_t)n);
			break;
		}
	}
	close(fd);
	return n < 0 ? 0 : n;
}

static void print_answer(const uint8_t *ans, size_t len, bool records)
{
	ldns_pkt *p = NULL;
	if (ldns_wire2pkt(&p, ans, len) != LDNS_STATUS_OK) {
		printf("malformed\n");
		return;
	}
	ldns_lookup_table *rc = ldns_lookup_by_id(ldns_rcodes, ldns_pkt_get_rcode(p));
	int ext = ldns_pkt_edns(p) ? ldns_pkt_edns_extended_rcode(p) : 0;
	printf("rcode=%s%s flags=%s%s%s%s an=%zu ns=%zu qd=%u",
	       ext  ? "BADVERS"
	       : rc ? rc->name
	            : "?",
	       "", ldns_pkt_qr(p) ? "qr," : "", ldns_pkt_aa(p) ? "aa," : "",
	       ldns_pkt_tc(p) ? "tc," : "", ldns_pkt_ra(p) ? "ra," : "",
	       (size_t)ldns_pkt_ancount(p), (size_t)ldns_pkt_nscount(p), ldns_pkt_qdcount(p));
	if (ldns_pkt_edns(p)) {
		printf(" edns=%u", ldns_pkt_edns_udp_size(p));
		ldns_rdf *d = ldns_pkt_edns_data(p);
		if (d && ldns_rdf_size(d) >= 4 && ldns_rdf_data(d)[1] == 3)
			printf(" nsid=%.*s", (int)ldns_rdf_size(d) - 4, ldns_rdf_data(d) + 4);
		/* every Extended DNS Error (RFC 8914) as ldns decodes it: ede=CODE:TEXT */
		ldns_edns_option_list *l = ldns_pkt_edns_get_option_list(p);
		for (size_t i = 0; l && i < ldns_edns_option_list_get_count(l); i++) {
			ldns_edns_option *o = ldns_edns_option_list_get_option(l, i);
			const uint8_t *e = ldns_edns_get_data(o);
			if (ldns_edns_get_code(o) == LDNS_EDNS_EDE && ldns_edns_get_size(o) >= 2)
				printf(" ede=%u:%.*s", e[0] << 8 | e[1],
				       (int)ldns_edns_get_size(o) - 2, e + 2);
		}
	}
	printf("\n");
	if (records) {
		ldns_rr_list_print(stdout, ldns_pkt_answer(p));
		ldns_rr_list_print(stdout, ldns_pkt_authority(p));
	}
	ldns_pkt_free(p);
}

static int cmd_query(int argc, char **argv)
{
	bool tcp = false, nsid = false;
	int edns = 0, i = 0;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--tcp") == 0)
			tcp = true;
		else if (strcmp(argv[i], "--nsid") == 0)
			nsid = true;
		else if (strcmp(argv[i], "--edns") == 0 && i + 1 < argc)
			edns = atoi(argv[++i]);
	}
	if (argc - i != 4)
		return 2;
	struct sockaddr_storage ss;
	socklen_t sl;
	if (addr_of(argv[i], argv[i + 1], &ss, &sl))
		return 2;
	ldns_pkt *q = NULL;
	ldns_rr_type type = ldns_get_rr_type_by_name(argv[i + 3]);
	if (ldns_pkt_query_new_frm_str(&q, argv[i + 2], type, LDNS_RR_CLASS_IN, LDNS_RD) !=
	    LDNS_STATUS_OK)
		return 2;
	ldns_pkt_set_random_id(q);
	if (edns || nsid) {
		ldns_pkt_set_edns_udp_size(q, (uint16_t)(edns ? edns : 1232));
		if (nsid) {
			static const uint8_t opt[4] = {0, 3, 0, 0};
			ldns_pkt_set_edns_data(
			        q, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_UNKNOWN, 4, opt));
		}
	}
	uint8_t *wire, ans[65535];
	size_t len;
	ldns_pkt2wire(&wire, q, &len);
	ldns_pkt_free(q);
	ssize_t n = exchange(&ss, sl, tcp, wire, len, ans, sizeof(ans));
	free(wire);
	if (n <= 0) {
		printf("silence\n");
		return 1;
	}
	print_answer(ans, (size_t)n, true);
	return 0;
}

static int cmd_raw(int argc, char **argv)
{
	bool tcp = argc > 0 && strcmp(argv[0], "--tcp") == 0;
	if (tcp)
		argc--, argv++;
	struct sockaddr_storage ss;
	socklen_t sl;
	if (target(argc, argv, 3, &ss, &sl))
		return 2;
	size_t hl = strlen(argv[2]), len = hl / 2;
	uint8_t msg[65535], ans[65535];
	for (size_t k = 0; k < len && k < sizeof(msg); k++)
		sscanf(argv[2] + 2 * k, "%2hhx", &msg[k]);
	ssize_t n = exchange(&ss, sl, tcp, msg, len, ans, sizeof(ans));
	if (n <= 0) {
		printf("silence\n");
		return 0;
	}
	print_answer(ans, (size_t)n, false);
	return 0;
}

static uint64_t rng_state;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

static int cmd_storm(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (target(argc, argv, 4, &ss, &sl))
		return 2;
	long count = atol(argv[2]);
	rng_state = (uint64_t)atoll(argv[3]) * 2654435761u + 1;
	int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
	static const uint8_t seed[] = {0x12, 0x34, 0x01, 0x00, 0,   1,  0,   0,   0,   0,   0,
	                               1,    3,    'w',  'e',  'b', 8,  'i', 'n', 't', 'e', 'r',
	                               'n',  'a',  'l',  0,    0,   28, 0,   1,   0,   0,   41,
	                               4,    0xd0, 0,    0,    0,   0,  0,   0};
	for (long i = 0; i < count; i++) {
		uint8_t msg[600];
		size_t len;
		if (i % 2) { /* random bytes */
			len = rnd() % 300;
			for (size_t k = 0; k < len; k++)
				msg[k] = (uint8_t)rnd();
		} else { /* a valid query with a few bytes flipped, cut or grown */
			memcpy(msg, seed, sizeof(seed));
			len = sizeof(seed);
			for (int k = (int)(rnd() % 4); k >= 0; k--)
				msg[rnd() % len] = (uint8_t)rnd();
			if (rnd() % 4 == 0)
				len = rnd() % len;
			else if (rnd() % 4 == 0)
				len += rnd() % 100;
		}
		sendto(fd, msg, len, 0, (struct sockaddr *)&ss, sl);
		if (i % 256 == 255) { /* stay bounded: drain answers, pace the sender */
			uint8_t junk[2048];
			while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
				;
			struct timespec ts = {0, 2000000};
			nanosleep(&ts, NULL);
		}
	}
	close(fd);
	return 0;
}

static int cmd_idle(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (target(argc, argv, 4, &ss, &sl))
		return 2;
	int count = atoi(argv[2]), secs = atoi(argv[3]), closed = 0;
	struct pollfd *p = calloc((size_t)count, sizeof(*p));
	for (int i = 0; i < count; i++) {
		p[i].fd = socket(ss.ss_family, SOCK_STREAM, 0);
		p[i].events = POLLIN;
		if (connect(p[i].fd, (struct sockaddr *)&ss, sl))
			p[i].fd = -1, closed++;
	}
	time_t end = time(NULL) + secs;
	while (time(NULL) < end) {
		if (poll(p, (nfds_t)count, 200) <= 0)
			continue;
		for (int i = 0; i < count; i++) {
			char b[16];
			if (p[i].fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    recv(p[i].fd, b, sizeof(b), MSG_DONTWAIT) <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				closed++;
			}
		}
	}
	printf("closed=%d\n", closed);
	for (int i = 0; i < count; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	free(p);
	return 0;
}

static int tcp_connect(const char *host, const char *port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (addr_of(host, port, &ss, &sl))
		exit(2);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl)) {
		perror("dnsq: connect");
		exit(2);
	}
	return fd;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An optional leading "--from SRC": the address to send from into from/fl (fl stays 0
 * without it), taken off argc/argv. Nonzero when SRC is not an address. */
static int from_opt(int *argc, char ***argv, struct sockaddr_storage *from, socklen_t *fl)
{
	if (*argc < 2 || strcmp((*argv)[0], "--from") != 0)
		return 0;
	if (addr_of((*argv)[1], "0", from, fl))
		return 1;
	*argc -= 2, *argv += 2;
	return 0;
}

static int cmd_trickle(int argc, char **argv)
{
	struct sockaddr_storage ss, from;
	socklen_t sl, fl = 0;
	if (from_opt(&argc, &argv, &from, &fl))
		return 2;
	if (target(argc, argv, 6, &ss, &sl))
		return 2;
	int count = atoi(argv[2]), refused = 0, closed = 0, open_now = 0;
	long end = now_ms() + atol(argv[3]) * 1000, every = atol(argv[4]);
	uint8_t msg[512];
	size_t len = strlen(argv[5]) / 2;
	for (size_t k = 0; k < len && k < sizeof(msg); k++)
		sscanf(argv[5] + 2 * k, "%2hhx", &msg[k]);
	struct pollfd *p = calloc((size_t)count, sizeof(*p));
	long *born = calloc((size_t)count, sizeof(*born));
	size_t *sent = calloc((size_t)count, sizeof(*sent));
	for (int i = 0; i < count; i++) {
		p[i].fd = socket(ss.ss_family, SOCK_STREAM, 0);
		p[i].events = POLLIN;
		born[i] = now_ms();
		if (p[i].fd < 0 || (fl && bind(p[i].fd, (struct sockaddr *)&from, fl)) ||
		    connect(p[i].fd, (struct sockaddr *)&ss, sl)) {
			if (p[i].fd >= 0)
				close(p[i].fd);
			p[i].fd = -1, refused++;
		}
	}
	long next = now_ms();
	while (now_ms() < end) {
		if (now_ms() >= next) {
			for (int i = 0; i < count; i++)
				if (p[i].fd >= 0 && sent[i] < len &&
				    send(p[i].fd, msg + sent[i], 1, MSG_NOSIGNAL | MSG_DONTWAIT) ==
				            1)
					sent[i]++;
			next += every;
		}
		long wait = next - now_ms();
		if (poll(p, (nfds_t)count, (int)(wait < 0 ? 0 : wait > 100 ? 100 : wait)) <= 0)
			continue;
		for (int i = 0; i < count; i++) {
			char b[512];
			if (p[i].fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    recv(p[i].fd, b, sizeof(b), MSG_DONTWAIT) <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				if (getenv("DNSQ_DEBUG"))
					fprintf(stderr, "%d closed at %ld ms\n", i,
					        now_ms() - born[i]);
				if (now_ms() - born[i] < 3000)
					refused++;
				else
					closed++;
			}
		}
	}
	for (int i = 0; i < count; i++)
		if (p[i].fd >= 0)
			close(p[i].fd), open_now++;
	printf("refused=%d closed=%d open=%d\n", refused, closed, open_now);
	free(p);
	free(born);
	free(sent);
	return 0;
}

static int cmd_partial(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int fd = tcp_connect(argv[0], argv[1]);
	uint8_t msg[4096];
	size_t len = strlen(argv[2]) / 2;
	for (size_t k = 0; k < len && k < sizeof(msg); k++)
		sscanf(argv[2] + 2 * k, "%2hhx", &msg[k]);
	long t0 = now_ms(), limit = atol(argv[3]) * 1000;
	if (send(fd, msg, len, MSG_NOSIGNAL) < 0)
		perror("dnsq: send");
	struct pollfd p = {fd, POLLIN, 0};
	while (now_ms() - t0 < limit) {
		char b[64];
		if (poll(&p, 1, 100) == 1 && recv(fd, b, sizeof(b), 0) <= 0) {
			printf("closed after %ld ms\n", now_ms() - t0);
			return 0;
		}
	}
	printf("open\n");
	return 0;
}

static int cmd_noread(int argc, char **argv)
{
	if (argc != 3 && argc != 5)
		return 2;
	int fd = tcp_connect(argv[0], argv[1]);
	ldns_pkt *p = NULL;
	if (ldns_pkt_query_new_frm_str(&p, argc == 5 ? argv[3] : "web.internal.",
	                               ldns_get_rr_type_by_name(argc == 5 ? argv[4] : "AAAA"),
	                               LDNS_RR_CLASS_IN, LDNS_RD) != LDNS_STATUS_OK)
		return 2;
	uint8_t *wire, burst[64 * 512];
	size_t len, n = 0;
	ldns_pkt2wire(&wire, p, &len);
	ldns_pkt_free(p);
	while (n + len + 2 <= sizeof(burst)) { /* as many framed queries as fit */
		burst[n] = (uint8_t)(len >> 8), burst[n + 1] = (uint8_t)len;
		memcpy(burst + n + 2, wire, len);
		n += len + 2;
	}
	free(wire);
	/* the padded query: header, "." NS question, an OPT with a 20000-byte padding option */
	static uint8_t big[2 + 17 + 11 + 4 + 20000];
	const uint8_t head[] = {0,
	                        0,
	                        0x77,
	                        0x77,
	                        1,
	                        0,
	                        0,
	                        1,
	                        0,
	                        0,
	                        0,
	                        0,
	                        0,
	                        1,
	                        0,
	                        0,
	                        2,
	                        0,
	                        1,
	                        0,
	                        0,
	                        41,
	                        0x10,
	                        0,
	                        0,
	                        0,
	                        0,
	                        0,
	                        (20004 >> 8),
	                        (20004 & 0xff),
	                        0,
	                        12,
	                        (20000 >> 8),
	                        (20000 & 0xff)};
	memcpy(big, head, sizeof(head));
	size_t blen = sizeof(big) - 2;
	big[0] = (uint8_t)(blen >> 8), big[1] = (uint8_t)blen;
	if (send(fd, big, sizeof(big), MSG_NOSIGNAL) < 0)
		perror("dnsq: send");
	long t0 = now_ms(), limit = atol(argv[2]) * 1000, sent = 0;
	struct pollfd pf = {fd, POLLOUT, 0};
	while (now_ms() - t0 < limit) {
		if (poll(&pf, 1, 100) != 1)
			continue; /* the server stopped reading: our buffer is full */
		ssize_t k = send(fd, burst, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0 && errno != EAGAIN)
			break;
		if (k > 0)
			sent += k;
	}
	printf("sent=%ld\n", sent);
	close(fd);
	return 0;
}

static int bound(const struct sockaddr_storage *ss, socklen_t sl, int type)
{
	int one = 1, fd = socket(ss->ss_family, type, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (const struct sockaddr *)ss, sl)) {
		perror("dnsq: bind");
		exit(2);
	}
	if (type == SOCK_STREAM)
		listen(fd, 64);
	return fd;
}

static int cmd_blackhole(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (target(argc, argv, 3, &ss, &sl))
		return 2;
	struct pollfd p[2] = {{bound(&ss, sl, SOCK_DGRAM), POLLIN, 0},
	                      {bound(&ss, sl, SOCK_STREAM), POLLIN, 0}};
	int held[256], nheld = 0;
	time_t end = time(NULL) + atoi(argv[2]);
	while (time(NULL) < end) {
		if (poll(p, 2, 200) <= 0)
			continue;
		uint8_t b[4096];
		if (p[0].revents & POLLIN)
			recv(p[0].fd, b, sizeof(b), 0);
		if ((p[1].revents & POLLIN) && nheld < 256)
			held[nheld++] = accept(p[1].fd, NULL, NULL); /* and never read */
	}
	while (nheld > 0)
		close(held[--nheld]);
	return 0;
}

/* An answer to query q (n bytes): QR, one A record for the question's name. */
static size_t answer_a(const uint8_t *q, size_t n, uint8_t *out, uint8_t last_octet)
{
	memcpy(out, q, n);
	out[2] |= 0x80;
	out[7] = 1;
	out[10] = out[11] = 0; /* drop any OPT */
	size_t o = 12;
	while (o < n && out[o])
		o += 1 + out[o];
	o += 5;
	const uint8_t rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, last_octet};
	memcpy(out + o, rr, sizeof(rr));
	return o + sizeof(rr);
}

static int cmd_liar(int argc, char **argv)
{
	struct sockaddr_storage ss, other;
	socklen_t sl;
	if (target(argc, argv, 3, &ss, &sl))
		return 2;
	int fd = bound(&ss, sl, SOCK_DGRAM);
	other = ss;
	((struct sockaddr_in6 *)&other)->sin6_port = 0; /* same family layout for the port */
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&other)->sin_port = 0;
	int fd2 = bound(&other, sl, SOCK_DGRAM);
	time_t end = time(NULL) + atoi(argv[2]);
	struct pollfd p = {fd, POLLIN, 0};
	while (time(NULL) < end) {
		if (poll(&p, 1, 200) <= 0)
			continue;
		uint8_t q[512], a[600];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
		if (n < 17)
			continue;
		size_t len = answer_a(q, (size_t)n, a, 66);
		a[0] ^= 0xff; /* wrong ID */
		sendto(fd, a, len, 0, (struct sockaddr *)&from, fl);
		a[0] ^= 0xff;
		sendto(fd2, a, len, 0, (struct sockaddr *)&from, fl); /* wrong source port */
		a[13] = a[13] == 'z' ? 'y' : 'z';                     /* another question */
		sendto(fd, a, len, 0, (struct sockaddr *)&from, fl);
		len = answer_a(q, (size_t)n, a, 99);
		struct timespec ts = {0, 30000000};
		nanosleep(&ts, NULL);
		sendto(fd, a, len, 0, (struct sockaddr *)&from, fl);
	}
	return 0;
}

/* A name in wire form at q+12, lower-cased into text; returns the offset past it. */
static size_t qname_text(const uint8_t *q, size_t n, char *out, size_t cap)
{
	size_t o = 12, w = 0;
	while (o < n && q[o] && w + q[o] + 2 < cap) {
		for (size_t k = 1; k <= q[o] && o + k < n; k++) {
			char c = (char)q[o + k];
			out[w++] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
		}
		out[w++] = '.';
		o += 1u + q[o];
	}
	out[w] = '\0';
	return o + 1;
}

static int cmd_counter(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (target(argc, argv, 5, &ss, &sl))
		return 2;
	int fd = bound(&ss, sl, SOCK_DGRAM);
	long end = now_ms() + atol(argv[2]) * 1000, delay = atol(argv[3]);
	FILE *log = fopen(argv[4], "a");
	if (!log) {
		perror("dnsq: log");
		return 2;
	}
	enum { PENDING = 256 };
	static struct {
		uint8_t a[600];
		size_t len;
		struct sockaddr_storage from;
		socklen_t fl;
		long due;
	} pend[PENDING];
	int npend = 0;
	unsigned seen = 0;
	while (now_ms() < end) {
		struct pollfd p = {fd, POLLIN, 0};
		long wait = 100;
		for (int i = 0; i < npend; i++)
			if (pend[i].due - now_ms() < wait)
				wait = pend[i].due - now_ms() < 0 ? 0 : pend[i].due - now_ms();
		if (poll(&p, 1, (int)wait) == 1 && npend < PENDING) {
			uint8_t q[512];
			struct sockaddr_storage from;
			socklen_t fl = sizeof(from);
			ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
			if (n >= 17) {
				char name[300];
				size_t o = qname_text(q, (size_t)n, name, sizeof(name));
				if (o + 4 > (size_t)n)
					continue;
				unsigned type = (unsigned)(q[o] << 8 | q[o + 1]);
				bool edns = false, dnssec = false; /* DO: in the OPT's TTL */
				unsigned size = 0, opts = 0;
				if (q[11] >= 1 && (size_t)n >= o + 4 + 11 && q[o + 4 + 1] == 0 &&
				    q[o + 4 + 2] == 41) {
					const uint8_t *opt = q + o + 4;
					edns = true, dnssec = (opt[7] & 0x80) != 0;
					size = (unsigned)(opt[3] << 8 | opt[4]);
					size_t rdlen = (size_t)(opt[9] << 8 | opt[10]), at = 11;
					while (at + 4 <= 11 + rdlen &&
					       o + 4 + at + 4 <= (size_t)n) {
						at += 4 + (size_t)(opt[at + 2] << 8 | opt[at + 3]);
						opts++;
					}
				}
				fprintf(log, "%s %u edns=%d do=%d cd=%d size=%u opts=%u\n", name,
				        type, edns, dnssec, (q[3] & 0x10) != 0, size, opts);
				fflush(log);
				seen++;
				if (strncmp(name, "drop", 4) == 0)
					continue; /* a name the upstream never answers */
				uint8_t *a = pend[npend].a;
				memcpy(a, q, o + 4);
				a[2] = (uint8_t)(0x84 | (q[2] & 0x01)); /* QR AA, RD copied */
				a[3] = q[3] & 0x10;
				memset(a + 6, 0, 6);
				size_t len = o + 4;
				static int flips;
				bool flip = strncmp(name, "flip", 4) == 0;
				if (strncmp(name, "sf", 2) == 0 || (flip && flips++ > 0)) {
					a[3] |= 2;
				} else if (strncmp(name, "nx", 2) == 0) {
					a[3] |= 3;
					a[9] = 1;
					const uint8_t soa[] = {0xc0, 12, 0,   6,  0, 1, 0, 0,  1,
					                       44,   0,  22,  0,  0, 0, 0, 0,  1,
					                       0,    0,  14,  16, 0, 0, 2, 88, 0,
					                       1,    81, 128, 0,  0, 0, 2};
					memcpy(a + len, soa, sizeof(soa));
					len += sizeof(soa);
				} else {
					unsigned ttl = flip             ? 1
					               : name[0] == 't' ? (unsigned)atoi(name + 1)
					                                : 60;
					a[7] = 1;
					const uint8_t rr[] = {0xc0,
					                      12,
					                      0,
					                      1,
					                      0,
					                      1,
					                      (uint8_t)(ttl >> 24),
					                      (uint8_t)(ttl >> 16),
					                      (uint8_t)(ttl >> 8),
					                      (uint8_t)ttl,
					                      0,
					                      4,
					                      10,
					                      0,
					                      (uint8_t)(seen >> 8),
					                      (uint8_t)seen};
					memcpy(a + len, rr, sizeof(rr));
					len += sizeof(rr);
				}
				if (edns && strncmp(name, "ede", 3) == 0) {
					/* its own Extended DNS Error: 17 Filtered, "by upstream" */
					const uint8_t opt[] = {0,   0,   41,  4,   208, 0,   0,
					                       0,   0,   0,   17,  0,   15,  0,
					                       13,  0,   17,  'b', 'y', ' ', 'u',
					                       'p', 's', 't', 'r', 'e', 'a', 'm'};
					a[11] = 1;
					memcpy(a + len, opt, sizeof(opt));
					len += sizeof(opt);
				}
				pend[npend].len = len;
				pend[npend].from = from, pend[npend].fl = fl;
				pend[npend].due = now_ms() + delay;
				npend++;
			}
		}
		for (int i = 0; i < npend;) {
			if (pend[i].due > now_ms()) {
				i++;
				continue;
			}
			sendto(fd, pend[i].a, pend[i].len, 0, (struct sockaddr *)&pend[i].from,
			       pend[i].fl);
			pend[i] = pend[--npend];
		}
	}
	fclose(log);
	return 0;
}

static int cmd_same(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if ((argc != 5 && argc != 6) || addr_of(argv[0], argv[1], &ss, &sl))
		return 2;
	int count = atoi(argv[4]);
	long wait_ms = argc == 6 ? atol(argv[5]) : 5000;
	if (count < 1 || count > 1000)
		return 2;
	ldns_pkt *q = NULL;
	if (ldns_pkt_query_new_frm_str(&q, argv[2], ldns_get_rr_type_by_name(argv[3]),
	                               LDNS_RR_CLASS_IN, LDNS_RD) != LDNS_STATUS_OK)
		return 2;
	uint8_t *w = NULL;
	size_t len = 0;
	if (ldns_pkt2wire(&w, q, &len) != LDNS_STATUS_OK)
		return 2;
	ldns_pkt_free(q);
	struct pollfd *p = calloc((size_t)count, sizeof(*p));
	for (int i = 0; i < count; i++) {
		p[i].fd = socket(ss.ss_family, SOCK_DGRAM, 0);
		p[i].events = POLLIN;
		if (p[i].fd < 0 || connect(p[i].fd, (struct sockaddr *)&ss, sl)) {
			perror("dnsq: connect");
			return 2;
		}
	}
	for (int i = 0; i < count; i++)
		send(p[i].fd, w, len, 0);
	int answered = 0;
	long end = now_ms() + wait_ms;
	while (answered < count && now_ms() < end) {
		if (poll(p, (nfds_t)count, 100) <= 0)
			continue;
		for (int i = 0; i < count; i++) {
			uint8_t b[1500];
			if ((p[i].revents & POLLIN) && recv(p[i].fd, b, sizeof(b), 0) > 0) {
				answered++;
				close(p[i].fd);
				p[i].fd = -1;
			}
		}
	}
	for (int i = 0; i < count; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	free(p);
	free(w);
	printf("answered=%d\n", answered);
	return 0;
}

/* The wire form of a query for name and type (RD set), into out; its length, 0 on error. */
static size_t query_wire(const char *name, ldns_rr_type type, uint16_t id, uint8_t *out, size_t cap)
{
	ldns_pkt *q = NULL;
	if (ldns_pkt_query_new_frm_str(&q, name, type, LDNS_RR_CLASS_IN, LDNS_RD) != LDNS_STATUS_OK)
		return 0;
	ldns_pkt_set_id(q, id);
	uint8_t *w = NULL;
	size_t len = 0;
	if (ldns_pkt2wire(&w, q, &len) != LDNS_STATUS_OK || len > cap)
		len = 0;
	else
		memcpy(out, w, len);
	free(w);
	ldns_pkt_free(q);
	return len;
}

static int cmd_flood(int argc, char **argv)
{
	struct sockaddr_storage ss, from;
	socklen_t sl, fl = 0;
	if (from_opt(&argc, &argv, &from, &fl))
		return 2;
	if (target(argc, argv, 5, &ss, &sl))
		return 2;
	int count = atoi(argv[2]), sent = 0, answered = 0, servfail = 0;
	int fd = socket(ss.ss_family, SOCK_DGRAM, 0), big = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (fd < 0 || (fl && bind(fd, (struct sockaddr *)&from, fl)) ||
	    connect(fd, (struct sockaddr *)&ss, sl)) {
		perror("dnsq: flood");
		return 2;
	}
	uint8_t q[512], a[4096];
	for (int i = 0; i < count; i++) {
		char name[256];
		snprintf(name, sizeof(name), argv[3], i);
		size_t len = query_wire(name, LDNS_RR_TYPE_A, (uint16_t)i, q, sizeof(q));
		if (len && send(fd, q, len, 0) == (ssize_t)len)
			sent++;
		if (i % 16 == 15) { /* what came back so far, so no socket overflows */
			ssize_t n;
			while ((n = recv(fd, a, sizeof(a), MSG_DONTWAIT)) >= 12)
				answered++, servfail += (a[3] & 0xf) == 2;
			struct timespec ts = {0, 1000000}; /* 1 ms: ~16k queries a second */
			nanosleep(&ts, NULL);
		}
	}
	long end = now_ms() + atol(argv[4]);
	struct pollfd p = {fd, POLLIN, 0};
	while (now_ms() < end) {
		if (poll(&p, 1, 50) != 1)
			continue;
		ssize_t n = recv(fd, a, sizeof(a), 0);
		if (n >= 12)
			answered++, servfail += (a[3] & 0xf) == 2;
	}
	printf("sent=%d answered=%d servfail=%d\n", sent, answered, servfail);
	close(fd);
	return 0;
}

static int cmd_tcpstall(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (target(argc, argv, 4, &ss, &sl))
		return 2;
	struct pollfd p[17] = {{bound(&ss, sl, SOCK_STREAM), POLLIN, 0}};
	static uint8_t buf[16][4096];
	size_t have[17] = {0};
	int n = 1, accepted = 0;
	time_t end = time(NULL) + atoi(argv[2]);
	while (time(NULL) < end) {
		if (poll(p, (nfds_t)n, 200) <= 0)
			continue;
		if ((p[0].revents & POLLIN) && n < 17) {
			int fd = accept(p[0].fd, NULL, NULL);
			FILE *log = fopen(argv[3], "a");
			if (log)
				fprintf(log, "accept\n"), fclose(log);
			if (fd >= 0 && accepted++ > 0) /* the first is held, never read */
				p[n].fd = fd, p[n].events = POLLIN, have[n] = 0, n++;
		}
		for (int i = 1; i < n; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			ssize_t r =
			        recv(p[i].fd, buf[i - 1] + have[i], sizeof(buf[0]) - have[i], 0);
			if (r <= 0) {
				close(p[i].fd);
				p[i] = p[n - 1], memcpy(buf[i - 1], buf[n - 2], have[n - 1]);
				have[i] = have[n - 1], n--, i--;
				continue;
			}
			have[i] += (size_t)r;
			while (have[i] >= 2) {
				size_t m = (size_t)buf[i - 1][0] << 8 | buf[i - 1][1];
				if (have[i] < 2 + m || m < 17 || m > 512)
					break;
				uint8_t a[600];
				size_t len = answer_a(buf[i - 1] + 2, m, a + 2, 7);
				a[0] = (uint8_t)(len >> 8), a[1] = (uint8_t)len;
				send(p[i].fd, a, len + 2, MSG_NOSIGNAL);
				memmove(buf[i - 1], buf[i - 1] + 2 + m, have[i] - 2 - m);
				have[i] -= 2 + m;
			}
		}
	}
	return 0;
}

static int cmd_pipeline(int argc, char **argv)
{
	bool halfclose = argc > 0 && strcmp(argv[0], "--halfclose") == 0;
	bool noread = argc > 0 && strcmp(argv[0], "--noread") == 0;
	if (halfclose || noread)
		argc--, argv++;
	if (argc != 5)
		return 2;
	int count = atoi(argv[2]);
	if (count < 1 || count > 1000)
		return 2;
	int fd = tcp_connect(argv[0], argv[1]);
	static uint8_t out[1000 * 300];
	size_t n = 0;
	for (int i = 0; i < count; i++) {
		char name[256];
		snprintf(name, sizeof(name), argv[3], i);
		size_t len = query_wire(name, LDNS_RR_TYPE_A, (uint16_t)i, out + n + 2,
		                        sizeof(out) - n - 2);
		if (!len)
			return 2;
		out[n] = (uint8_t)(len >> 8), out[n + 1] = (uint8_t)len;
		n += 2 + len;
	}
	if (send(fd, out, n, MSG_NOSIGNAL) != (ssize_t)n) {
		perror("dnsq: send");
		return 2;
	}
	if (halfclose)
		shutdown(fd, SHUT_WR);
	long end = now_ms() + atol(argv[4]) * 1000;
	int answered = 0;
	size_t got = 0;
	static uint8_t in[65537 * 2];
	struct pollfd p = {fd, POLLIN, 0};
	while (now_ms() < end && answered < count) {
		if (noread) {
			struct timespec ts = {0, 50000000};
			nanosleep(&ts, NULL);
			continue;
		}
		if (poll(&p, 1, 100) != 1)
			continue;
		ssize_t r = recv(fd, in + got, sizeof(in) - got, 0);
		if (r <= 0)
			break; /* the server closed */
		got += (size_t)r;
		while (got >= 2 && got >= 2 + (size_t)(in[0] << 8 | in[1])) {
			size_t m = (size_t)(in[0] << 8 | in[1]);
			answered++;
			memmove(in, in + 2 + m, got - 2 - m);
			got -= 2 + m;
		}
	}
	printf("answered=%d\n", answered);
	close(fd);
	return 0;
}

static int cmd_zeroport(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (target(argc, argv, 4, &ss, &sl) || ss.ss_family != AF_INET)
		return 2;
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
	if (fd < 0) {
		perror("dnsq: raw socket (root needed)");
		return 2;
	}
	uint8_t pkt[8 + 512];
	size_t len = query_wire(argv[2], ldns_get_rr_type_by_name(argv[3]), 0x2b2b, pkt + 8, 512);
	if (!len)
		return 2;
	uint16_t dport = ((struct sockaddr_in *)&ss)->sin_port;
	memset(pkt, 0, 8); /* source port 0, checksum 0 (none, allowed over IPv4) */
	memcpy(pkt + 2, &dport, 2);
	pkt[4] = (uint8_t)((8 + len) >> 8), pkt[5] = (uint8_t)(8 + len);
	((struct sockaddr_in *)&ss)->sin_port = 0;
	if (sendto(fd, pkt, 8 + len, 0, (struct sockaddr *)&ss, sl) < 0) {
		perror("dnsq: sendto");
		return 2;
	}
	close(fd);
	return 0;
}

static int cmd_every(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (argc != 6 || addr_of(argv[0], argv[1], &ss, &sl))
		return 2;
	ldns_rr_type type = ldns_get_rr_type_by_name(argv[3]);
	long interval = atol(argv[4]), end = now_ms() + atol(argv[5]), t0 = now_ms();
	int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) || interval < 1) {
		perror("dnsq: every");
		return 2;
	}
	for (uint16_t id = 1; now_ms() < end; id++) {
		uint8_t q[512], b[1500];
		size_t len = query_wire(argv[2], type, id, q, sizeof(q));
		long next = now_ms() + interval;
		if (!len || send(fd, q, len, 0) < 0)
			return 2;
		for (long left; (left = next - now_ms()) > 0;) {
			struct pollfd p = {fd, POLLIN, 0};
			if (poll(&p, 1, (int)left) != 1)
				continue;
			ssize_t n = recv(fd, b, sizeof(b), 0);
			ldns_pkt *a = NULL;
			if (n < 12 || b[0] != id >> 8 || b[1] != (id & 0xff) ||
			    ldns_wire2pkt(&a, b, (size_t)n) != LDNS_STATUS_OK)
				continue;
			ldns_rr_list *an = ldns_pkt_answer(a);
			if (ldns_rr_list_rr_count(an) == 0) {
				printf("%ld - -\n", now_ms() - t0);
			} else {
				ldns_rr *rr = ldns_rr_list_rr(an, 0);
				char *rd = ldns_rdf2str(ldns_rr_rdf(rr, 0));
				printf("%ld %u %s\n", now_ms() - t0, (unsigned)ldns_rr_ttl(rr),
				       rd ? rd : "?");
				free(rd);
			}
			fflush(stdout);
			ldns_pkt_free(a);
		}
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} modes[] = {
	        {"query", cmd_query},         {"raw", cmd_raw},
	        {"storm", cmd_storm},         {"idle", cmd_idle},
	        {"partial", cmd_partial},     {"noread", cmd_noread},
	        {"blackhole", cmd_blackhole}, {"liar", cmd_liar},
	        {"counter", cmd_counter},     {"same", cmd_same},
	        {"tcpstall", cmd_tcpstall},   {"pipeline", cmd_pipeline},
	        {"zeroport", cmd_zeroport},   {"every", cmd_every},
	        {"trickle", cmd_trickle},     {"flood", cmd_flood},
	};
	for (size_t i = 0; argc >= 2 && i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(argv[1], modes[i].name) == 0)
			return modes[i].fn(argc - 2, argv + 2);
	fprintf(stderr, "usage: dnsq "
	                "query|raw|storm|idle|partial|noread|blackhole|liar|counter|same|tcpstall|"
	                "pipeline|zeroport|every|trickle|flood ... "
	                "(see the source)\n");
	return 2;
}
