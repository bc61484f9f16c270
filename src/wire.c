/*
 * wire.c — decode a query, write a response (RFC 1035, RFC 6891).
 *
 * Every read checks the length first; every write checks the limit first and writes
 * nothing of a record that does not fit. Names in a query's question may not use
 * compression (nothing precedes them to point at). It must never allocate or block.
 */
#include "wire.h"
#include "bytes.h"

#include <errno.h>
#include <string.h>

int wire_skip_name(const uint8_t *p, size_t len, size_t *off)
{
	size_t o = *off, total = 0;
	for (;;) {
		if (o >= len)
			return -1;
		uint8_t l = p[o];
		if ((l & 0xc0) == 0xc0) {
			if (o + 2 > len)
				return -1;
			*off = o + 2;
			return 0;
		}
		if (l & 0xc0)
			return -1;
		total += 1 + (size_t)l;
		if (total > WIRE_NAME_MAX)
			return -1;
		o += 1 + (size_t)l;
		if (l == 0) {
			*off = o;
			return 0;
		}
	}
}

/* The question's name: labels only, lower-cased into q->qname. */
static int read_qname(const uint8_t *p, size_t len, size_t *off, wire_query_t *q)
{
	size_t o = *off, n = 0;
	for (;;) {
		if (o >= len)
			return -1;
		uint8_t l = p[o];
		if (l & 0xc0)
			return -1; /* compression (or an extended label) in a question */
		if (n + 1 + l > WIRE_NAME_MAX || o + 1 + l > len)
			return -1;
		q->qname[n++] = l;
		for (size_t i = 0; i < l; i++) {
			uint8_t c = p[o + 1 + i];
			q->qname[n++] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
		}
		o += 1 + (size_t)l;
		if (l == 0)
			break;
	}
	q->qname_len = n;
	*off = o;
	return 0;
}

static int read_question(const uint8_t *p, size_t len, size_t *off, wire_query_t *q)
{
	if (read_qname(p, len, off, q) || *off + 4 > len)
		return -1;
	q->qtype = get_be16(p + *off);
	q->qclass = get_be16(p + *off + 2);
	*off += 4;
	q->question_end = *off;
	q->has_question = true;
	return 0;
}

/* The OPT record's RDATA: options, each code | length | data, none overrunning. */
static int read_opt(const uint8_t *p, size_t end, size_t o, wire_query_t *q)
{
	while (o < end) {
		if (o + 4 > end)
			return -1;
		uint16_t code = get_be16(p + o), olen = get_be16(p + o + 2);
		o += 4;
		if (o + olen > end)
			return -1;
		if (code == 3)
			q->edns_nsid = true;
		o += olen;
	}
	return 0;
}

/* The an + ns + ar records after the question (off: their start): the OPT read into q. */
static int read_records(const uint8_t *p, size_t len, size_t off, unsigned an, unsigned ns,
                        unsigned ar, wire_query_t *q)
{
	for (unsigned i = 0; i < an + ns + ar; i++) {
		size_t owner = off;
		if (wire_skip_name(p, len, &off) || off + 10 > len)
			return WIRE_FORMERR;
		uint16_t type = get_be16(p + off), rdlen = get_be16(p + off + 8);
		size_t rdata = off + 10;
		if (rdata + rdlen > len)
			return WIRE_FORMERR;
		if (type == WIRE_OPT) {
			/* one OPT, in the additional section, owned by the root */
			if (i < an + ns || q->edns || p[owner] != 0 || owner + 1 != off)
				return WIRE_FORMERR;
			q->edns = true;
			q->edns_udp = get_be16(p + off + 2);
			q->edns_version = p[off + 5];
			q->edns_do = p[off + 6] & 0x80;
			if (read_opt(p, rdata + rdlen, rdata, q))
				return WIRE_FORMERR;
		}
		off = rdata + rdlen;
	}
	return off == len ? WIRE_OK : WIRE_FORMERR; /* no trailing bytes past the records */
}

static int parse_query(const uint8_t *p, size_t len, wire_query_t *q)
{
	q->has_question = q->edns = q->edns_do = q->edns_nsid = false;
	q->qname_len = q->question_end = 0;
	q->qtype = q->qclass = q->edns_udp = 0;
	q->edns_version = 0;
	q->scope = 0;
	memset(q->source, 0, sizeof(q->source));
	if (len < WIRE_HDR || (p[2] & 0x80))
		return WIRE_DROP;
	q->id = get_be16(p);
	q->opcode = (p[2] >> 3) & 0xf;
	q->rd = p[2] & 1;
	q->cd = p[3] & 0x10;
	uint16_t qd = get_be16(p + 4), an = get_be16(p + 6), ns = get_be16(p + 8),
	         ar = get_be16(p + 10);
	size_t off = WIRE_HDR;

	if (q->opcode != 0) {
		/* NOTIMP, with an OPT when the records can be read and hold one (RFC 6891
		 * section 6.1.1: a request with an OPT gets a response with one) */
		if (qd == 1 && read_question(p, len, &off, q))
			q->has_question = false;
		if (!q->has_question || read_records(p, len, off, an, ns, ar, q) != WIRE_OK)
			q->edns = q->edns_do = q->edns_nsid = false;
		return WIRE_NOTIMP;
	}
	if (qd != 1 || read_question(p, len, &off, q)) {
		q->has_question = false;
		return WIRE_FORMERR;
	}
	int rc = read_records(p, len, off, an, ns, ar, q);
	if (rc != WIRE_OK)
		return rc;
	if (q->edns && q->edns_version > 0)
		return WIRE_BADVERS;
	if (wire_qtype_notimp(q->qtype))
		return WIRE_NOTIMP;
	return WIRE_OK;
}

int wire_parse_query(const uint8_t *p, size_t len, wire_query_t *q)
{
	int rc = parse_query(p, len, q);
	/* a message we could not read whole has no EDNS to answer in: its FORMERR carries no
	 * OPT (as Knot DNS answers) */
	if (rc == WIRE_FORMERR)
		q->edns = false;
	return rc;
}

size_t wire_udp_size(const wire_query_t *q)
{
	size_t size = q->edns ? q->edns_udp : WIRE_UDP_MIN;
	return size < WIRE_UDP_MIN ? WIRE_UDP_MIN : size > WIRE_EDNS_SIZE ? WIRE_EDNS_SIZE : size;
}

bool wire_qtype_notimp(uint16_t qtype)
{
	/* RFC 6895 3.1: 128-255 are meta-types, meaningful only in a question. Of them we
	 * know IXFR, AXFR (REFUSED), MAILB, MAILA (no data) and ANY; TKEY and TSIG are
	 * not questions we serve. QTYPE 0 is reserved. */
	return qtype == 0 || (qtype >= 128 && qtype < WIRE_IXFR);
}

/* ---- response ------------------------------------------------------------------------- */

size_t wire_opt_size(size_t nsid_len)
{
	return 11 + (nsid_len ? 4 + nsid_len : 0);
}

int wire_resp_begin(wire_resp_t *r, uint8_t *buf, size_t cap, size_t size, size_t reserve,
                    const uint8_t *pkt, const wire_query_t *q)
{
	size_t qlen = q->has_question ? q->question_end - WIRE_HDR : 0;
	size_t limit = size < cap ? size : cap;
	if (limit < WIRE_HDR + qlen + reserve)
		return -ENOSPC;
	memset(r, 0, sizeof(*r));
	r->buf = buf;
	r->reserve = reserve;
	r->limit = limit - reserve;
	memset(buf, 0, WIRE_HDR);
	put_be16(buf, q->id);
	buf[2] = (uint8_t)(0x80 | q->opcode << 3 | (q->rd ? 1 : 0));
	buf[3] = q->cd ? 0x10 : 0;
	if (q->has_question) {
		put_be16(buf + 4, 1);
		memcpy(buf + WIRE_HDR, pkt + WIRE_HDR, qlen);
	}
	r->len = WIRE_HDR + qlen;
	return 0;
}

void wire_resp_rcode(wire_resp_t *r, int rcode)
{
	r->rcode = rcode;
	r->buf[3] = (uint8_t)((r->buf[3] & 0xf0) | (rcode & 0xf));
}

void wire_resp_flags(wire_resp_t *r, bool aa, bool ra)
{
	r->buf[2] = (uint8_t)((r->buf[2] & ~0x04) | (aa ? 0x04 : 0));
	r->buf[3] = (uint8_t)((r->buf[3] & ~0x80) | (ra ? 0x80 : 0));
}

/* owner pointer | type | class IN | ttl | rdlength (filled later) */
static size_t rr_head(wire_resp_t *r, uint16_t owner, uint16_t type, uint32_t ttl)
{
	uint8_t *p = r->buf + r->len;
	put_be16(p, (uint16_t)(0xc000 | owner));
	put_be16(p + 2, type);
	put_be16(p + 4, WIRE_CLASS_IN);
	put_be32(p + 6, ttl);
	r->len += 12;
	return r->len; /* rdata starts here */
}

static void rr_done(wire_resp_t *r, size_t rdata, int section)
{
	put_be16(r->buf + rdata - 2, (uint16_t)(r->len - rdata));
	r->count[section]++;
}

/* An address record (A or AAAA) of n bytes in the answer section. */
static int add_addr(wire_resp_t *r, uint16_t owner, uint16_t type, uint32_t ttl, const uint8_t *ip,
                    size_t n)
{
	if (r->len + 12 + n > r->limit)
		return -ENOSPC;
	size_t rd = rr_head(r, owner, type, ttl);
	memcpy(r->buf + r->len, ip, n);
	r->len += n;
	rr_done(r, rd, WIRE_AN);
	return 0;
}

int wire_add_aaaa(wire_resp_t *r, uint16_t owner, uint32_t ttl, const uint8_t ip[16])
{
	return add_addr(r, owner, WIRE_AAAA, ttl, ip, 16);
}

int wire_add_a(wire_resp_t *r, uint16_t owner, uint32_t ttl, const uint8_t ip[4])
{
	return add_addr(r, owner, WIRE_A, ttl, ip, 4);
}

int wire_add_ptr(wire_resp_t *r, uint16_t owner, uint32_t ttl, const uint8_t *target, size_t len)
{
	if (r->len + 12 + len > r->limit)
		return -ENOSPC;
	size_t rd = rr_head(r, owner, WIRE_PTR, ttl);
	memcpy(r->buf + r->len, target, len);
	r->len += len;
	rr_done(r, rd, WIRE_AN);
	return 0;
}

/* "<label>." under internal.: a pointer where internal. stands already, else in full
 * (and *internal_off learns where). */
static void put_under_internal(wire_resp_t *r, const char *label, uint16_t *internal_off)
{
	size_t l = strlen(label);
	uint8_t *p = r->buf + r->len;
	p[0] = (uint8_t)l;
	memcpy(p + 1, label, l);
	r->len += 1 + l;
	if (*internal_off) {
		put_be16(r->buf + r->len, (uint16_t)(0xc000 | *internal_off));
		r->len += 2;
	} else {
		*internal_off = (uint16_t)r->len;
		memcpy(r->buf + r->len, "\010internal", 10);
		r->len += 10;
	}
}

int wire_add_soa(wire_resp_t *r, int section, uint16_t owner, uint32_t ttl, uint32_t serial,
                 uint32_t minimum, uint16_t internal_off)
{
	/* head 12, mname <= 3+11, rname <= 11+2, five numbers 20 */
	if (r->len + 12 + 14 + 13 + 20 > r->limit)
		return -ENOSPC;
	size_t rd = rr_head(r, owner, WIRE_SOA, ttl);
	put_under_internal(r, WIRE_NS_LABEL, &internal_off);
	put_under_internal(r, "hostmaster", &internal_off);
	uint8_t *p = r->buf + r->len;
	put_be32(p, serial);
	put_be32(p + 4, 3600);   /* refresh */
	put_be32(p + 8, 600);    /* retry */
	put_be32(p + 12, 86400); /* expire */
	put_be32(p + 16, minimum);
	r->len += 20;
	rr_done(r, rd, section);
	return 0;
}

int wire_add_ns(wire_resp_t *r, uint16_t owner, uint32_t ttl, uint16_t internal_off)
{
	if (r->len + 12 + 14 > r->limit)
		return -ENOSPC;
	size_t rd = rr_head(r, owner, WIRE_NS, ttl);
	put_under_internal(r, WIRE_NS_LABEL, &internal_off);
	rr_done(r, rd, WIRE_AN);
	return 0;
}

int wire_txt_begin(wire_resp_t *r, uint16_t owner, uint32_t ttl)
{
	if (r->len + 12 + 1 > r->limit)
		return -ENOSPC;
	r->txt_start = r->len;
	r->txt_rdata = rr_head(r, owner, WIRE_TXT, ttl);
	r->txt_cs = 0;
	return 0;
}

int wire_txt_append(wire_resp_t *r, const void *text, size_t len)
{
	const uint8_t *s = text;
	while (len) {
		if (!r->txt_cs || r->buf[r->txt_cs] == 255) {
			if (r->len + 1 > r->limit || r->len + 1 - r->txt_rdata > 65535)
				return -ENOSPC;
			r->txt_cs = r->len;
			r->buf[r->len++] = 0;
		}
		size_t room = 255 - (size_t)r->buf[r->txt_cs], n = len < room ? len : room;
		if (r->len + n > r->limit || r->len + n - r->txt_rdata > 65535)
			return -ENOSPC;
		memcpy(r->buf + r->len, s, n);
		r->buf[r->txt_cs] = (uint8_t)(r->buf[r->txt_cs] + n);
		r->len += n, s += n, len -= n;
	}
	return 0;
}

size_t wire_txt_mark(const wire_resp_t *r)
{
	return r->len;
}

void wire_txt_rewind(wire_resp_t *r, size_t mark)
{
	size_t pos = r->txt_rdata;
	r->len = mark;
	r->txt_cs = 0;
	while (pos < mark) {
		size_t l = r->buf[pos];
		if (pos + 1 + l >= mark) {
			r->buf[pos] = (uint8_t)(mark - pos - 1);
			r->txt_cs = pos;
			break;
		}
		pos += 1 + l;
	}
}

int wire_txt_end(wire_resp_t *r)
{
	if (r->len == r->txt_rdata) { /* an empty text is one empty character-string */
		if (r->len + 1 > r->limit)
			return -ENOSPC;
		r->buf[r->len++] = 0;
	}
	rr_done(r, r->txt_rdata, WIRE_AN);
	return 0;
}

void wire_txt_abort(wire_resp_t *r)
{
	r->len = r->txt_start;
}

/* An OPT record at p without its RDATA (rdlen bytes, to follow): 11 bytes. */
static void put_opt(uint8_t *p, int rcode, bool dnssec_ok, uint16_t rdlen)
{
	p[0] = 0; /* root */
	put_be16(p + 1, WIRE_OPT);
	put_be16(p + 3, WIRE_EDNS_SIZE);
	p[5] = (uint8_t)(rcode >> 4); /* extended rcode */
	p[6] = 0;                     /* version */
	p[7] = dnssec_ok ? 0x80 : 0;
	p[8] = 0;
	put_be16(p + 9, rdlen);
}

void wire_resp_ede(wire_resp_t *r, uint16_t code, const char *text)
{
	r->ede_code = code;
	r->ede_text = text;
}

static size_t ede_text_len(const char *text)
{
	return strnlen(text, WIRE_EDE_TEXT_MAX);
}

/* INFO-CODE and EXTRA-TEXT (RFC 8914 section 2) at p: 4 + 2 + n bytes. */
static size_t put_ede(uint8_t *p, uint16_t code, const char *text, size_t n)
{
	put_be16(p, WIRE_OPT_EDE);
	put_be16(p + 2, (uint16_t)(2 + n));
	put_be16(p + 4, code);
	memcpy(p + 6, text, n);
	return 6 + n;
}

int wire_add_opt(wire_resp_t *r, bool dnssec_ok, const char *nsid, size_t nsid_len)
{
	r->limit += r->reserve;
	r->reserve = 0;
	if (r->len + wire_opt_size(nsid_len) > r->limit)
		return -ENOSPC;
	size_t rdlen = nsid_len ? 4 + nsid_len : 0, ede = 0;
	if (r->ede_text) {
		ede = 6 + ede_text_len(r->ede_text);
		if (r->len + wire_opt_size(nsid_len) + ede > r->limit)
			ede = 0; /* why is worth less than what */
	}
	uint8_t *p = r->buf + r->len;
	put_opt(p, r->rcode, dnssec_ok, (uint16_t)(rdlen + ede));
	r->len += 11;
	if (nsid_len) {
		put_be16(p + 11, 3);
		put_be16(p + 13, (uint16_t)nsid_len);
		memcpy(p + 15, nsid, nsid_len);
		r->len += 4 + nsid_len;
	}
	if (ede)
		r->len += put_ede(r->buf + r->len, r->ede_code, r->ede_text, ede - 6);
	r->count[WIRE_AR]++;
	return 0;
}

size_t wire_resp_end(wire_resp_t *r)
{
	put_be16(r->buf + 6, r->count[WIRE_AN]);
	put_be16(r->buf + 8, r->count[WIRE_NS_SEC]);
	put_be16(r->buf + 10, r->count[WIRE_AR]);
	if (r->tc)
		r->buf[2] |= 0x02;
	return r->len;
}

size_t wire_error_response(const uint8_t *pkt, size_t len, int rcode, uint8_t *out, size_t cap)
{
	return wire_error_response_ede(pkt, len, rcode, 0, NULL, out, cap);
}

size_t wire_error_response_ede(const uint8_t *pkt, size_t len, int rcode, uint16_t ede,
                               const char *text, uint8_t *out, size_t cap)
{
	wire_query_t q;
	wire_resp_t r;
	if (wire_parse_query(pkt, len, &q) == WIRE_DROP ||
	    wire_resp_begin(&r, out, cap, cap, q.edns ? wire_opt_size(0) : 0, pkt, &q))
		return 0;
	if (text)
		wire_resp_ede(&r, ede, text);
	wire_resp_rcode(&r, rcode);
	wire_resp_flags(&r, false, q.opcode == 0); /* RA only on QUERY */
	if (q.edns)
		wire_add_opt(&r, q.edns_do, NULL, 0);
	return wire_resp_end(&r);
}

bool wire_answers(const wire_query_t *q, uint16_t up_id, const uint8_t *r, size_t len)
{
	if (!q->has_question || len < q->question_end || !(r[2] & 0x80) || get_be16(r) != up_id ||
	    get_be16(r + 4) != 1)
		return false;
	for (size_t i = 0; i < q->qname_len; i++) {
		uint8_t c = r[WIRE_HDR + i];
		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c + 32);
		if (c != q->qname[i])
			return false;
	}
	const uint8_t *t = r + WIRE_HDR + q->qname_len;
	return get_be16(t) == q->qtype && get_be16(t + 2) == q->qclass;
}

void wire_answer_for(uint8_t *out, const uint8_t *pkt, const wire_query_t *q)
{
	put_be16(out, q->id);
	out[2] = (uint8_t)((out[2] & ~0x01) | (pkt[2] & 0x01)); /* RD */
	out[3] = (uint8_t)((out[3] & ~0x10) | (pkt[3] & 0x10)); /* CD */
	out[3] |= 0x80;                                         /* RA: we recurse for it */
	if (!(pkt[3] & 0x20) && !q->edns_do)
		out[3] &= (uint8_t)~0x20;                     /* AD only to who asks for it */
	memcpy(out + WIRE_HDR, pkt + WIRE_HDR, q->qname_len); /* the client's case */
}

size_t wire_relay(const uint8_t *pkt, const wire_query_t *q, const uint8_t *resp, size_t len,
                  size_t max, uint8_t *out)
{
	memcpy(out, resp, len);
	wire_answer_for(out, pkt, q);
	return len > max ? wire_truncate(out, len, q) : len;
}

size_t wire_truncate(uint8_t *out, size_t cap, const wire_query_t *q)
{
	size_t n = q->question_end;
	out[2] |= 0x02;
	memset(out + 6, 0, 6);
	if (q->edns && n + wire_opt_size(0) <= cap) {
		put_opt(out + n, 0, q->edns_do, 0);
		put_be16(out + 10, 1);
		n += wire_opt_size(0);
	}
	return n;
}

/* The OPT's options (rdlen bytes at p) with only the EDEs kept, moved to the front:
 * their length. An Extended DNS Error says why an answer is what it is, for whoever gets
 * it; options that do not walk are all dropped. */
static size_t keep_ede(uint8_t *p, size_t rdlen)
{
	size_t r = 0, w = 0;
	while (r + 4 <= rdlen) {
		size_t olen = get_be16(p + r + 2);
		if (r + 4 + olen > rdlen)
			return 0;
		if (get_be16(p + r) == WIRE_OPT_EDE) {
			memmove(p + w, p + r, 4 + olen);
			w += 4 + olen;
		}
		r += 4 + olen;
	}
	return r == rdlen ? w : 0;
}

size_t wire_strip_options(uint8_t *msg, size_t len)
{
	size_t off = WIRE_HDR;
	if (len < WIRE_HDR || get_be16(msg + 4) != 1 || wire_skip_name(msg, len, &off) ||
	    off + 4 > len)
		return len;
	off += 4;
	unsigned records = (unsigned)get_be16(msg + 6) + get_be16(msg + 8) + get_be16(msg + 10);
	for (unsigned i = 0; i < records; i++) {
		if (wire_skip_name(msg, len, &off) || off + 10 > len)
			return len;
		uint16_t type = get_be16(msg + off), rdlen = get_be16(msg + off + 8);
		off += 10;
		if (off + rdlen > len)
			return len;
		if (type == WIRE_OPT && rdlen > 0) {
			size_t keep = keep_ede(msg + off, rdlen);
			if (off + rdlen == len) {
				put_be16(msg + off - 2,
				         (uint16_t)keep); /* the last record: cut short */
				return off + keep;
			}
			if (rdlen - keep >= 4) {
				/* records follow, and their names may point past the OPT
				 * (compression): nothing after it moves, the rest becomes one
				 * Padding option (RFC 7830) */
				put_be16(msg + off + keep, 12);
				put_be16(msg + off + keep + 2, (uint16_t)(rdlen - keep - 4));
				memset(msg + off + keep + 4, 0, rdlen - keep - 4u);
			}
		}
		off += rdlen;
	}
	return len;
}

/* The offset of the last record's RDATA length when that record is the OPT; 1 when the
 * message walks whole and has no OPT; 0 when it does not walk or its OPT is not last. */
static size_t last_opt(const uint8_t *msg, size_t len)
{
	size_t off = WIRE_HDR;
	if (len < WIRE_HDR || get_be16(msg + 4) != 1 || wire_skip_name(msg, len, &off) ||
	    off + 4 > len)
		return 0;
	off += 4;
	unsigned records = (unsigned)get_be16(msg + 6) + get_be16(msg + 8) + get_be16(msg + 10);
	for (unsigned i = 0; i < records; i++) {
		if (wire_skip_name(msg, len, &off) || off + 10 > len)
			return 0;
		uint16_t type = get_be16(msg + off), rdlen = get_be16(msg + off + 8);
		if (off + 10 + rdlen > len)
			return 0;
		if (type == WIRE_OPT)
			return i == records - 1 && off + 10 + rdlen == len ? off + 8 : 0;
		off += 10 + (size_t)rdlen;
	}
	return off == len ? 1 : 0;
}

size_t wire_add_ede(uint8_t *msg, size_t len, size_t cap, const wire_query_t *q, uint16_t code,
                    const char *text)
{
	size_t at = last_opt(msg, len), n = ede_text_len(text);
	if (!q->edns || !at)
		return len;
	if (at == 1) { /* no OPT: ours, with the client's DO bit */
		if (len + 11 + 6 + n > cap || get_be16(msg + 10) == 0xffff)
			return len;
		put_opt(msg + len, msg[3] & 0x0f, q->edns_do, (uint16_t)(6 + n));
		put_be16(msg + 10, (uint16_t)(get_be16(msg + 10) + 1));
		return len + 11 + put_ede(msg + len + 11, code, text, n);
	}
	if (len + 6 + n > cap || get_be16(msg + at) + 6 + n > 65535)
		return len;
	put_be16(msg + at, (uint16_t)(get_be16(msg + at) + 6 + n));
	return len + put_ede(msg + len, code, text, n);
}

int wire_find_ede(const uint8_t *msg, size_t len)
{
	size_t at = last_opt(msg, len);
	if (at <= 1)
		return -1;
	size_t o = at + 2, end = o + get_be16(msg + at);
	while (o + 4 <= end) {
		uint16_t code = get_be16(msg + o), olen = get_be16(msg + o + 2);
		if (o + 4 + olen > end)
			return -1;
		if (code == WIRE_OPT_EDE && olen >= 2)
			return get_be16(msg + o + 4);
		o += 4 + (size_t)olen;
	}
	return -1;
}
