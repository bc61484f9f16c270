/*
 * dnsdiff — asks two DNS servers the same questions and compares their answers, for the
 * differential test against Knot DNS (tests/integration/diff). Built on ldns, so it
 * shares nothing with internald's codec.
 *
 *   dnsdiff [--tcp] [--noedns] [--seed N] [--show N] ADDR PORT_A PORT_B FILE
 *
 * FILE has one question a line, "NAME TYPE" (TYPE as ldns spells it, or TYPEnnn). Each
 * question goes to both servers with the same ID, RD clear, EDNS payload 1232 (none with
 * --noedns: the 512-byte UDP limit) and the
 * name's letters in a random case (the seed makes it repeatable); over TCP each server
 * gets one connection that carries every query. Compared, in this order:
 *   rcode; the AA and TC flags; the OPT record (present, payload size, DO); with TC on
 *   both, nothing more (what fits is each
 *   server's choice); the answer section as a set of RRs (owner as sent, TTL included,
 *   names inside RDATA case-insensitively) — for ANY, A's RRs must be among B's (RFC
 *   8482 lets a server answer with a subset of the RRsets: Knot gives one); the
 *   authority section as a set of RRs.
 * The additional section is not compared (Knot adds the NS target's address there).
 * Prints the first N (--show, default 40) differences as
 *   "DIFF <name> <type>: <what> A=<...> B=<...>", then one line
 *   "dnsdiff: Q questions (udp|tcp), S same, D different, L lost"; exit 0 only when
 * every question got an answer from both and all agree.
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
#include <unistd.h>

typedef struct {
	struct sockaddr_in6 sa;
	int fd;
	bool tcp;
} server_t;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static int server_open(server_t *s)
{
	s->fd = socket(AF_INET6, s->tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&s->sa, sizeof(s->sa))) {
		perror("dnsdiff: connect");
		return -1;
	}
	return 0;
}

static bool read_full(int fd, uint8_t *p, size_t n)
{
	size_t got = 0;
	struct pollfd pf = {fd, POLLIN, 0};
	while (got < n) {
		if (poll(&pf, 1, 3000) != 1)
			return false;
		ssize_t r = recv(fd, p + got, n - got, 0);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

/* One exchange; the answer's length, or 0 when none came (UDP: one retry). */
static size_t ask(server_t *s, const uint8_t *q, size_t len, uint8_t *ans, size_t cap)
{
	uint16_t id = (uint16_t)(q[0] << 8 | q[1]);
	if (s->tcp) {
		for (int attempt = 0; attempt < 2; attempt++) {
			uint8_t frame[2 + 512], hdr[2];
			frame[0] = (uint8_t)(len >> 8), frame[1] = (uint8_t)len;
			memcpy(frame + 2, q, len);
			if (send(s->fd, frame, len + 2, MSG_NOSIGNAL) == (ssize_t)(len + 2) &&
			    read_full(s->fd, hdr, 2)) {
				size_t n = (size_t)(hdr[0] << 8 | hdr[1]);
				if (n <= cap && read_full(s->fd, ans, n))
					return n;
			}
			close(s->fd); /* closed under us (idle timeout): once more on a new one */
			if (server_open(s))
				return 0;
		}
		return 0;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		if (send(s->fd, q, len, 0) < 0)
			return 0;
		struct pollfd pf = {s->fd, POLLIN, 0};
		while (poll(&pf, 1, 1000) == 1) {
			ssize_t r = recv(s->fd, ans, cap, 0);
			if (r >= 2 && (uint16_t)(ans[0] << 8 | ans[1]) == id)
				return (size_t)r;
		}
	}
	return 0;
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A section as its RRs' text, sorted, joined by " | "; caller frees. */
static char *section(ldns_rr_list *l)
{
	size_t n = ldns_rr_list_rr_count(l), len = 1;
	char **s = calloc(n + 1, sizeof(*s));
	for (size_t i = 0; i < n; i++) {
		/* names inside RDATA compare case-insensitively: a server may compress them
		 * against the question's name and so take its case (Knot does) */
		ldns_rr *rr = ldns_rr_clone(ldns_rr_list_rr(l, i));
		for (size_t k = 0; k < ldns_rr_rd_count(rr); k++)
			if (ldns_rdf_get_type(ldns_rr_rdf(rr, k)) == LDNS_RDF_TYPE_DNAME)
				ldns_dname2canonical(ldns_rr_rdf(rr, k));
		s[i] = ldns_rr2str(rr);
		ldns_rr_free(rr);
		size_t k = strlen(s[i]);
		while (k && s[i][k - 1] == '\n')
			s[i][--k] = 0;
		len += k + 3;
	}
	qsort(s, n, sizeof(*s), cmpstr);
	char *out = malloc(len);
	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(out, " | ");
		strcat(out, s[i]);
		free(s[i]);
	}
	free(s);
	return out;
}

static const char *rcode_name(ldns_pkt *p)
{
	static char buf[16];
	ldns_lookup_table *t = ldns_lookup_by_id(ldns_rcodes, ldns_pkt_get_rcode(p));
	if (t)
		return t->name;
	snprintf(buf, sizeof(buf), "RCODE%d", ldns_pkt_get_rcode(p));
	return buf;
}

static unsigned shown, show_max = 40;

static void diff(const char *name, const char *type, const char *what, const char *a, const char *b)
{
	if (shown++ < show_max)
		printf("DIFF %s %s: %s\n       A=%s\n       B=%s\n", name, type, what, a, b);
}

/* Is every RR of section text x (" | "-joined) in y? */
static bool subset(const char *x, const char *y)
{
	char *dup = strdup(x), *save = NULL;
	bool all = true;
	for (char *rr = strtok_r(dup, "|", &save); rr && all; rr = strtok_r(NULL, "|", &save)) {
		while (*rr == ' ')
			rr++;
		size_t n = strlen(rr);
		while (n && rr[n - 1] == ' ')
			rr[--n] = 0;
		all = n == 0 || strstr(y, rr) != NULL;
	}
	free(dup);
	return all;
}

/* 0 same, 1 different */
static int compare(const char *name, const char *type, ldns_pkt *a, ldns_pkt *b)
{
	if (ldns_pkt_get_rcode(a) != ldns_pkt_get_rcode(b)) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%s", rcode_name(a));
		diff(name, type, "rcode", ra, rcode_name(b));
		return 1;
	}
	if (ldns_pkt_aa(a) != ldns_pkt_aa(b)) {
		diff(name, type, "AA", ldns_pkt_aa(a) ? "aa" : "-", ldns_pkt_aa(b) ? "aa" : "-");
		return 1;
	}
	if (ldns_pkt_tc(a) != ldns_pkt_tc(b)) {
		diff(name, type, "TC", ldns_pkt_tc(a) ? "tc" : "-", ldns_pkt_tc(b) ? "tc" : "-");
		return 1;
	}
	if (ldns_pkt_edns(a) != ldns_pkt_edns(b) ||
	    (ldns_pkt_edns(a) && (ldns_pkt_edns_udp_size(a) != ldns_pkt_edns_udp_size(b) ||
	                          ldns_pkt_edns_do(a) != ldns_pkt_edns_do(b)))) {
		char x[32], y[32];
		snprintf(x, sizeof(x), "%s %u", ldns_pkt_edns(a) ? "OPT" : "-",
		         ldns_pkt_edns_udp_size(a));
		snprintf(y, sizeof(y), "%s %u", ldns_pkt_edns(b) ? "OPT" : "-",
		         ldns_pkt_edns_udp_size(b));
		diff(name, type, "EDNS", x, y);
		return 1;
	}
	if (ldns_pkt_tc(a))
		return 0;
	int rc = 0;
	ldns_rr_list *(*sec[2])(const ldns_pkt *) = {ldns_pkt_answer, ldns_pkt_authority};
	const char *what[2] = {"answer", "authority"};
	for (int i = 0; i < 2 && !rc; i++) {
		char *x = section(sec[i](a)), *y = section(sec[i](b));
		/* RFC 8482: an ANY answer may be any non-empty subset of the name's RRsets
		 * (Knot gives one); internald gives them all */
		bool any = i == 0 && ldns_pkt_get_rcode(a) == LDNS_RCODE_NOERROR &&
		           ldns_rr_list_rr_count(ldns_pkt_question(a)) == 1 &&
		           ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_question(a), 0)) ==
		                   LDNS_RR_TYPE_ANY;
		if (any ? !subset(x, y) || (!*x) != (!*y) : strcmp(x, y) != 0) {
			diff(name, type, what[i], x, y);
			rc = 1;
		}
		free(x), free(y);
	}
	return rc;
}

static int usage(void)
{
	fprintf(stderr, "usage: dnsdiff [--tcp] [--noedns] [--seed N] [--show N] ADDR PORT_A "
	                "PORT_B FILE\n");
	return 2;
}

int main(int argc, char **argv)
{
	bool tcp = false, edns = true;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--tcp") == 0)
			tcp = true;
		else if (strcmp(argv[i], "--noedns") == 0)
			edns = false;
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			rng = strtoull(argv[++i], NULL, 10) * 2654435761ULL + 1;
		else if (strcmp(argv[i], "--show") == 0 && i + 1 < argc)
			show_max = (unsigned)atoi(argv[++i]);
		else
			return usage();
	}
	if (argc - i != 4)
		return usage();
	server_t srv[2] = {{.tcp = tcp}, {.tcp = tcp}};
	for (int k = 0; k < 2; k++) {
		srv[k].sa.sin6_family = AF_INET6;
		srv[k].sa.sin6_port = htons((uint16_t)atoi(argv[i + 1 + k]));
		if (inet_pton(AF_INET6, argv[i], &srv[k].sa.sin6_addr) != 1) {
			fprintf(stderr, "dnsdiff: %s: not an IPv6 address\n", argv[i]);
			return 2;
		}
		if (server_open(&srv[k]))
			return 2;
	}
	FILE *f = fopen(argv[i + 3], "r");
	if (!f) {
		fprintf(stderr, "dnsdiff: %s: %s\n", argv[i + 3], strerror(errno));
		return 2;
	}
	char line[1024];
	unsigned long total = 0, same = 0, differ = 0, lost = 0, lineno = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char name[512], type[32];
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%511s %31s", name, type) != 2) {
			fprintf(stderr, "dnsdiff: %s:%lu: want \"NAME TYPE\"\n", argv[i + 3],
			        lineno);
			return 2;
		}
		ldns_rr_type t = ldns_get_rr_type_by_name(type);
		if (t == 0 && strcmp(type, "TYPE0") != 0) {
			fprintf(stderr, "dnsdiff: %s:%lu: unknown type %s\n", argv[i + 3], lineno,
			        type);
			return 2;
		}
		for (char *c = name; *c; c++) /* the 0x20 bit at random */
			if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))
				*c = (char)(rnd() & 1 ? (*c | 0x20) : (*c & ~0x20));
		ldns_pkt *q = NULL;
		/* ldns turns type 0 into A: write the type into the wire form afterwards */
		if (ldns_pkt_query_new_frm_str(&q, name, t ? t : LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN,
		                               0) != LDNS_STATUS_OK) {
			fprintf(stderr, "dnsdiff: %s:%lu: bad name %s\n", argv[i + 3], lineno,
			        name);
			return 2;
		}
		ldns_pkt_set_id(q, (uint16_t)rnd());
		if (edns)
			ldns_pkt_set_edns_udp_size(q, 1232);
		uint8_t *wire;
		size_t wlen;
		if (ldns_pkt2wire(&wire, q, &wlen) != LDNS_STATUS_OK || wlen > 512) {
			fprintf(stderr, "dnsdiff: %s:%lu: cannot encode\n", argv[i + 3], lineno);
			return 2;
		}
		ldns_pkt_free(q);
		if (t == 0) {
			size_t qend = 12;
			while (wire[qend])
				qend += 1 + wire[qend];
			wire[qend + 1] = wire[qend + 2] = 0;
		}
		total++;
		ldns_pkt *p[2] = {NULL, NULL};
		for (int k = 0; k < 2; k++) {
			uint8_t ans[65536];
			size_t n = ask(&srv[k], wire, wlen, ans, sizeof(ans));
			if (n && ldns_wire2pkt(&p[k], ans, n) != LDNS_STATUS_OK)
				p[k] = NULL;
		}
		free(wire);
		if (!p[0] || !p[1]) {
			lost++;
			if (shown++ < show_max)
				printf("LOST %s %s: no answer from %s\n", name, type,
				       p[0] ? "B" : "A");
		} else if (compare(name, type, p[0], p[1])) {
			differ++;
		} else {
			same++;
		}
		ldns_pkt_free(p[0]);
		ldns_pkt_free(p[1]);
	}
	fclose(f);
	printf("dnsdiff: %lu questions (%s%s), %lu same, %lu different, %lu lost\n", total,
	       tcp ? "tcp" : "udp", edns ? "" : " without EDNS", same, differ, lost);
	return differ || lost || !total ? 1 : 0;
}
