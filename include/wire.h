/*
 * wire — the DNS message codec of the query path: decode a query, write a response.
 *
 * Pure and allocation-free: it reads a caller's bytes and writes into a caller's
 * buffer, every read and write bounds-checked. It must never touch a socket, the
 * registry or the heap. ldns is the independent check in the tests, not a dependency.
 */
#ifndef INTERNALD_WIRE_H
#define INTERNALD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_HDR       12
#define WIRE_NAME_MAX  255
#define WIRE_UDP_MIN   512  /* without EDNS */
#define WIRE_EDNS_SIZE 1232 /* the payload size we advertise and honour at most */
#define WIRE_TCP_MAX   65535

enum wire_rcode {
	WIRE_NOERROR = 0,
	WIRE_FORMERR = 1,
	WIRE_SERVFAIL = 2,
	WIRE_NXDOMAIN = 3,
	WIRE_NOTIMP = 4,
	WIRE_REFUSED = 5,
	WIRE_BADVERS = 16, /* extended: 1 in the OPT's high bits, 0 in the header */
};

enum wire_type {
	WIRE_A = 1,
	WIRE_NS = 2,
	WIRE_SOA = 6,
	WIRE_PTR = 12,
	WIRE_TXT = 16,
	WIRE_AAAA = 28,
	WIRE_OPT = 41,
	WIRE_IXFR = 251,
	WIRE_AXFR = 252,
	WIRE_ANY = 255,
};
#define WIRE_CLASS_IN 1

/* Extended DNS Errors (RFC 8914): the option and the INFO-CODEs we say. */
#define WIRE_OPT_EDE 15
enum wire_ede {
	WIRE_EDE_STALE = 3,          /* Stale Answer (RFC 8767), with the answer */
	WIRE_EDE_CACHED_ERROR = 13,  /* a SERVFAIL answered from the cache */
	WIRE_EDE_NOT_READY = 14,     /* the registry has never been synced */
	WIRE_EDE_PROHIBITED = 18,    /* REFUSED: source not allowed, another org's resolver */
	WIRE_EDE_NOT_SUPPORTED = 21, /* NOTIMP: an opcode or meta-QTYPE we do not serve */
	WIRE_EDE_NO_REACHABLE = 22,  /* No Reachable Authority: no upstream answered */
};
#define WIRE_EDE_TEXT_MAX 64 /* our EXTRA-TEXTs are short ASCII, never the client's bytes */

typedef struct {
	uint16_t id;
	uint8_t opcode;
	bool rd, cd;
	bool has_question; /* the question parsed: a response may echo it */
	uint16_t qtype, qclass;
	uint8_t qname[WIRE_NAME_MAX]; /* lower-cased wire form */
	size_t qname_len;
	size_t question_end; /* offset just past QCLASS */
	bool edns;
	uint16_t edns_udp; /* the client's advertised payload size */
	uint8_t edns_version;
	bool edns_do, edns_nsid;
	/* Not from the wire: whose query this is, for state shared between clients.
	 * wire_parse_query sets both 0; the caller that knows the client sets them after.
	 * scope: the org's network, 0 for none (the cache keys on it); source: the client's
	 * address, IPv4 v4-mapped (the forwarder's share per source). */
	uint32_t scope;
	uint8_t source[16];
} wire_query_t;

/* Parse results besides an rcode. */
#define WIRE_OK   0
#define WIRE_DROP (-1)

/*
 * Decodes a query. Returns WIRE_OK; WIRE_DROP (shorter than a header, QR set: no
 * answer at all); or an rcode to answer with (FORMERR, NOTIMP, BADVERS) — q says how
 * much was understood (has_question, edns). NOTIMP: an opcode other than QUERY, or a
 * QTYPE wire_qtype_notimp() refuses. With FORMERR, edns is false: a message that could
 * not be read whole has no EDNS to answer in, so its FORMERR carries no OPT.
 */
int wire_parse_query(const uint8_t *pkt, size_t len, wire_query_t *q);
/* The largest UDP response q's querier takes: its EDNS payload size clamped to
 * [WIRE_UDP_MIN, WIRE_EDNS_SIZE]; WIRE_UDP_MIN without EDNS. */
size_t wire_udp_size(const wire_query_t *q);

/* Skips the (possibly compressed) name at *off in a message of len bytes, setting *off past
 * it. 0, or -1 when it is malformed or longer than WIRE_NAME_MAX. */
int wire_skip_name(const uint8_t *p, size_t len, size_t *off);

/* QTYPE 0 and the meta-types 128-250 without a meaning we serve (TKEY, TSIG and the
 * unassigned ones): NOTIMP. IXFR, AXFR, MAILB, MAILA and ANY are not. */
bool wire_qtype_notimp(uint16_t qtype);

/* A response under construction. */
typedef struct {
	uint8_t *buf;
	size_t limit; /* bytes the records may use (the OPT's room already set aside) */
	size_t len;
	uint16_t count[3]; /* answer, authority, additional */
	bool tc;
	size_t reserve; /* room kept for the OPT record */
	int rcode;
	size_t txt_start, txt_rdata, txt_cs; /* open TXT record (wire_txt_*) */
	const char *ede_text;                /* non-NULL: an EDE for the OPT (wire_resp_ede) */
	uint16_t ede_code;
} wire_resp_t;

enum { WIRE_AN, WIRE_NS_SEC, WIRE_AR };

/*
 * Starts a response to q in buf (cap bytes): header (id, opcode, RD and CD copied, QR
 * set) and, when q has one, the question as the client sent it (pkt: its bytes, case
 * preserved). size: the most the response may be (UDP limit or TCP max); reserve: room
 * kept back for the OPT record (wire_opt_size, 0 without EDNS). Returns 0, or -ENOSPC
 * when not even the header and question fit.
 */
int wire_resp_begin(wire_resp_t *r, uint8_t *buf, size_t cap, size_t size, size_t reserve,
                    const uint8_t *pkt, const wire_query_t *q);
/* The rcode (extended ones go to the OPT record); AA and RA flags. */
void wire_resp_rcode(wire_resp_t *r, int rcode);
void wire_resp_flags(wire_resp_t *r, bool aa, bool ra);

/*
 * Records. owner is a compression pointer target (an offset into the message, < 0x4000,
 * e.g. WIRE_HDR for the question's name). Each returns 0, or -ENOSPC when the record
 * does not fit whole: nothing of it is written and the caller decides about TC.
 */
int wire_add_aaaa(wire_resp_t *r, uint16_t owner, uint32_t ttl, const uint8_t ip[16]);
int wire_add_a(wire_resp_t *r, uint16_t owner, uint32_t ttl, const uint8_t ip[4]);
/* target: wire-form name, uncompressed */
int wire_add_ptr(wire_resp_t *r, uint16_t owner, uint32_t ttl, const uint8_t *target, size_t len);
/* SOA/NS of a zone whose apex is at owner; names are written under "internal."
 * (internal_off: where "internal." already stands in the message, or 0). The NS target
 * (and the SOA's MNAME) is WIRE_NS_LABEL.internal.: an app name is a hostname label
 * ([a-z0-9-]), so a name with an underscore can never be an app's. */
#define WIRE_NS_LABEL "_ns"
int wire_add_soa(wire_resp_t *r, int section, uint16_t owner, uint32_t ttl, uint32_t serial,
                 uint32_t minimum, uint16_t internal_off);
int wire_add_ns(wire_resp_t *r, uint16_t owner, uint32_t ttl, uint16_t internal_off);

/* A TXT record written in pieces: begin, append text (split into 255-byte
 * character-strings as it goes), end. mark/rewind let a caller drop a partial item. */
int wire_txt_begin(wire_resp_t *r, uint16_t owner, uint32_t ttl);
int wire_txt_append(wire_resp_t *r, const void *text, size_t len);
size_t wire_txt_mark(const wire_resp_t *r);
void wire_txt_rewind(wire_resp_t *r, size_t mark);
int wire_txt_end(wire_resp_t *r);
/* Throws the open TXT record away. */
void wire_txt_abort(wire_resp_t *r);

/*
 * Says why (RFC 8914): the OPT that wire_add_opt writes next carries an EDE option with
 * code and text (a string the caller keeps until then, at most WIRE_EDE_TEXT_MAX bytes
 * of it are written). Nothing is written without an OPT (a client that sent no EDNS
 * gets none); an EDE that does not fit beside the records is left out, it never costs
 * a record. Writes nothing now, allocates nothing.
 */
void wire_resp_ede(wire_resp_t *r, uint16_t code, const char *text);

/* The OPT record (uses the reserved room): our payload size, extended rcode bits, DO,
 * NSID when nsid_len > 0, and the EDE of wire_resp_ede when it fits. */
int wire_add_opt(wire_resp_t *r, bool dnssec_ok, const char *nsid, size_t nsid_len);

/*
 * Adds an EDE option (code, text as in wire_resp_ede) to the finished message msg (len
 * bytes, room for cap) for the client whose query was q, in place: into its OPT when that
 * is its last record (options already there, an upstream's own EDE, stay), else, when
 * it has no OPT at all (an upstream that sent none), into an OPT of ours appended with
 * q's DO bit. Nothing for a client that sent no EDNS, a message without room, or one that
 * does not walk. Returns the new length.
 */
size_t wire_add_ede(uint8_t *msg, size_t len, size_t cap, const wire_query_t *q, uint16_t code,
                    const char *text);

/* The EDE code of the first EDE option in msg's OPT record, or -1 when it has none. */
int wire_find_ede(const uint8_t *msg, size_t len);

/* Fixes the counts and flags in the header; returns the message length. */
size_t wire_resp_end(wire_resp_t *r);

/* A header-and-question answer with rcode to the query pkt (SERVFAIL when forwarding
 * fails, ...), with an OPT record when the query had one. Returns its length, or 0 when
 * the query deserves no answer. */
size_t wire_error_response(const uint8_t *pkt, size_t len, int rcode, uint8_t *out, size_t cap);
/* The same with an EDE (wire_resp_ede: in the OPT only, so only when the query had one). */
size_t wire_error_response_ede(const uint8_t *pkt, size_t len, int rcode, uint16_t ede,
                               const char *text, uint8_t *out, size_t cap);

/* Does resp answer the query q under the ID we sent it with (up_id): QR set, one
 * question, the same name (compared case-insensitively), type and class? */
bool wire_answers(const wire_query_t *q, uint16_t up_id, const uint8_t *resp, size_t len);

/*
 * Makes an answer written for one client (out: at least its header and question) the
 * answer to the client whose query was pkt/q: that client's ID, RD and CD and question
 * bytes (its letter case), RA set, and AD kept only when that client set AD or DO
 * (RFC 6840 section 5.8).
 */
void wire_answer_for(uint8_t *out, const uint8_t *pkt, const wire_query_t *q);

/*
 * Relays an upstream's answer resp (len bytes, wire_answers() true) to the client whose
 * query was pkt/q (wire_answer_for); longer than max: wire_truncate.
 * Writes out (cap >= len); returns the length.
 */
size_t wire_relay(const uint8_t *pkt, const wire_query_t *q, const uint8_t *resp, size_t len,
                  size_t max, uint8_t *out);

/*
 * Cuts the answer in out (cap bytes, its header and question the client's) to a TC
 * answer: header and question, and for a client that sent an OPT an OPT of ours with
 * its DO bit (RFC 6891 section 6.1.1), so the client retries over TCP knowing EDNS
 * works. Returns the new length.
 */
size_t wire_truncate(uint8_t *out, size_t cap, const wire_query_t *q);

/*
 * Cuts the options out of the OPT record of the message msg (len bytes), in place, and
 * returns its new length: an answer kept or shared for other clients must not carry
 * the first asker's cookie (RFC 7873), client subnet or padding. Extended DNS Errors
 * (RFC 8914) stay: they say why the answer is what it is, to anyone. An OPT that other
 * records follow (their names may point past it) keeps its length, the options cut
 * overwritten by one all-zero Padding option (RFC 7830). A message without options, or
 * one that cannot be walked, is left as it is (its length returned).
 */
size_t wire_strip_options(uint8_t *msg, size_t len);

/* The bytes an OPT record takes with nsid_len bytes of NSID (0: none). */
size_t wire_opt_size(size_t nsid_len);

#endif
