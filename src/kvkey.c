/*
 * kvkey.c — the fleet bucket's key layout. Pure (jansson only): it must never validate
 * more than the fields a key is made of — the record itself is jsonl's to judge.
 */
#include "kvkey.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *const prefixes[] = {
        [KVKEY_ORG] = "org",         [KVKEY_MACHINE] = "machine", [KVKEY_PEER] = "peer",
        [KVKEY_FLYCAST] = "flycast", [KVKEY_REGION] = "region",
};

/* A key part: 1..63 bytes, no '.', wildcard, space or control character. */
static bool part_ok(const char *s, size_t n)
{
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= ' ' || ch >= 0x7f || ch == '.' || ch == '*' || ch == '>')
			return false;
	}
	return true;
}

/* The string field f of o; NULL with err when missing or not a string. */
static const char *string_field(json_t *o, const char *f, size_t *n, char *err, size_t errcap)
{
	json_t *v = json_object_get(o, f);
	if (!v || !json_is_string(v)) {
		snprintf(err, errcap, "field '%s': missing or not a string", f);
		return NULL;
	}
	*n = json_string_length(v);
	return json_string_value(v);
}

/* Lower-cased copy of the string field f of o into buf[64]; 0, or -EINVAL with err. */
static int field(json_t *o, const char *f, char buf[64], char *err, size_t errcap)
{
	size_t n;
	const char *s = string_field(o, f, &n, err, errcap);
	if (!s)
		return -EINVAL;
	if (!part_ok(s, n)) {
		snprintf(err, errcap, "field '%s': '%.64s' cannot be part of a key", f, s);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
	buf[n] = '\0';
	return 0;
}

static int put_key(char *key, size_t cap, const char *a, const char *b, const char *c,
                   const char *d)
{
	int n = snprintf(key, cap, "%s.%s%s%s%s%s", a, b, c ? "." : "", c ? c : "", d ? "." : "",
	                 d ? d : "");
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int kvkey_machine(const char *org, const char *id, char *key, size_t cap)
{
	return put_key(key, cap, "machine", org, id, NULL);
}

/* The address of a Machine's or peer's put o (kvkey_addr_t). */
static void addr_of(json_t *o, bool machine, kvkey_addr_t *out)
{
	json_t *a = json_object_get(o, machine ? "private_ip" : "ip");
	json_t *st = json_object_get(o, "state"), *dns = json_object_get(o, "dns");
	out->set = json_is_string(a) && inet_pton(AF_INET6, json_string_value(a), out->ip) == 1;
	out->holds =
	        !machine ||
	        ((!st || (json_is_string(st) && strcmp(json_string_value(st), "started") == 0)) &&
	         !json_is_true(json_object_get(dns, "skip_registration")));
}

int kvkey_of_record(const char *line, size_t len, char *key, size_t cap, bool *del, char *id,
                    size_t idcap, char *err, size_t errcap)
{
	return kvkey_of_record_addr(line, len, key, cap, del, id, idcap, NULL, err, errcap);
}

int kvkey_of_record_addr(const char *line, size_t len, char *key, size_t cap, bool *del, char *id,
                         size_t idcap, kvkey_addr_t *addr, char *err, size_t errcap)
{
	json_error_t jerr;
	json_t *o = json_loadb(line, len, 0, &jerr);
	char a[64], b[64];
	int rc = -EINVAL, kind = -1;
	err[0] = '\0';
	key[0] = '\0';
	*del = false;
	if (addr)
		*addr = (kvkey_addr_t){0};
	if (!o) {
		snprintf(err, errcap, "malformed JSON at column %d: %s", jerr.column, jerr.text);
		return -EINVAL;
	}
	json_t *k = json_object_get(o, "kind"), *op = json_object_get(o, "op");
	if (!json_is_object(o) || !json_is_string(k)) {
		snprintf(err, errcap, "field 'kind': missing or not a string");
		goto out;
	}
	for (int i = 0; i < 5; i++)
		if (strcmp(json_string_value(k), prefixes[i]) == 0)
			kind = i;
	if (kind < 0) {
		snprintf(err, errcap, "field 'kind': unknown kind '%.32s'", json_string_value(k));
		goto out;
	}
	*del = json_is_string(op) && strcmp(json_string_value(op), "delete") == 0;
	switch (kind) {
	case KVKEY_ORG:
		if (!(rc = field(o, "slug", a, err, errcap)))
			rc = put_key(key, cap, "org", a, NULL, NULL);
		break;
	case KVKEY_REGION:
		if (!(rc = field(o, "code", a, err, errcap)))
			rc = put_key(key, cap, "region", a, NULL, NULL);
		break;
	case KVKEY_MACHINE:
		if ((rc = field(o, "id", b, err, errcap)))
			break;
		if (*del && !json_object_get(o, "org")) {
			rc = snprintf(id, idcap, "%s", b) >= (int)idcap ? -ENAMETOOLONG : 0;
			break;
		}
		if (!(rc = field(o, "org", a, err, errcap)))
			rc = kvkey_machine(a, b, key, cap);
		break;
	case KVKEY_PEER:
		if (!(rc = field(o, "org", a, err, errcap)) &&
		    !(rc = field(o, "name", b, err, errcap)))
			rc = put_key(key, cap, "peer", a, b, NULL);
		break;
	default: {
		/* the address is in the key as its 32 hex nibbles: any form inet_pton reads
		 * (as jsonl reads it), dots of an embedded IPv4 part included */
		uint8_t ip[16];
		char hex[33];
		const char *s;
		size_t n;
		if ((rc = field(o, "org", a, err, errcap)) ||
		    (rc = field(o, "app", b, err, errcap)))
			break;
		rc = -EINVAL;
		if (!(s = string_field(o, "ip", &n, err, errcap)))
			break;
		if (n >= INET6_ADDRSTRLEN || memchr(s, '\0', n) ||
		    inet_pton(AF_INET6, s, ip) != 1) {
			snprintf(err, errcap, "field 'ip': '%.64s' is not an IPv6 address", s);
			break;
		}
		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", ip[i]);
		rc = put_key(key, cap, "flycast", a, b, hex);
		break;
	}
	}
	if (rc == -ENAMETOOLONG)
		snprintf(err, errcap, "the key would be longer than %zu bytes", cap - 1);
	if (!rc && addr && !*del && (kind == KVKEY_MACHINE || kind == KVKEY_PEER))
		addr_of(o, kind == KVKEY_MACHINE, addr);
out:
	json_decref(o);
	return rc ? (rc == -ENAMETOOLONG ? -EINVAL : rc) : kind;
}

/* Splits key into its dot-separated parts (at most 4), copying them into p[4][64]. */
static int split(const char *key, char p[4][64])
{
	int n = 0;
	const char *s = key;
	for (;;) {
		const char *dot = strchr(s, '.');
		size_t len = dot ? (size_t)(dot - s) : strlen(s);
		if (n == 4 || !part_ok(s, len))
			return -EINVAL;
		memcpy(p[n], s, len);
		p[n++][len] = '\0';
		if (!dot)
			return n;
		s = dot + 1;
	}
}

int kvkey_kind(const char *key)
{
	static const int parts[] = {2, 3, 3, 4, 2};
	char p[4][64];
	int n = split(key, p);
	if (n < 0)
		return -EINVAL;
	for (int i = 0; i < 5; i++)
		if (strcmp(p[0], prefixes[i]) == 0) {
			if (n != parts[i])
				return -EINVAL;
			if (i == KVKEY_FLYCAST &&
			    (strlen(p[3]) != 32 || strspn(p[3], "0123456789abcdef") != 32))
				return -EINVAL;
			return i;
		}
	return -EINVAL;
}

int kvkey_delete_record(const char *key, char *buf, size_t cap)
{
	char p[4][64];
	int kind = kvkey_kind(key), n = 0;
	if (kind < 0)
		return kind;
	split(key, p);
	switch (kind) {
	case KVKEY_ORG:
		n = snprintf(buf, cap, "{\"kind\":\"org\",\"slug\":\"%s\",\"op\":\"delete\"}",
		             p[1]);
		break;
	case KVKEY_REGION:
		n = snprintf(buf, cap, "{\"kind\":\"region\",\"code\":\"%s\",\"op\":\"delete\"}",
		             p[1]);
		break;
	case KVKEY_MACHINE:
		/* with its org: the id may be another org's Machine by now */
		n = snprintf(buf, cap,
		             "{\"kind\":\"machine\",\"org\":\"%s\",\"id\":\"%s\",\"op\":"
		             "\"delete\"}",
		             p[1], p[2]);
		break;
	case KVKEY_PEER:
		n = snprintf(buf, cap,
		             "{\"kind\":\"peer\",\"org\":\"%s\",\"name\":\"%s\",\"op\":\"delete\"}",
		             p[1], p[2]);
		break;
	default: {
		char ip[40];
		for (int i = 0, j = 0; i < 32; i += 4) {
			memcpy(ip + j, p[3] + i, 4);
			j += 4;
			ip[j++] = i < 28 ? ':' : '\0';
		}
		n = snprintf(buf, cap,
		             "{\"kind\":\"flycast\",\"org\":\"%s\",\"app\":\"%s\",\"ip\":\"%s\","
		             "\"op\":\"delete\"}",
		             p[1], p[2], ip);
		break;
	}
	}
	return n < 0 || (size_t)n >= cap ? -ENOSPC : 0;
}

int kvkey_region_of(const char *line, size_t len, char *out, size_t cap)
{
	json_t *o = json_loadb(line, len, 0, NULL);
	json_t *r = json_is_object(o) ? json_object_get(o, "region") : NULL;
	int rc = -ENOENT;
	if (json_is_string(r) && json_string_length(r) < cap) {
		const char *v = json_string_value(r);
		size_t n = json_string_length(r);
		for (size_t i = 0; i < n; i++)
			out[i] = (char)(v[i] >= 'A' && v[i] <= 'Z' ? v[i] - 'A' + 'a' : v[i]);
		out[n] = '\0';
		rc = 0;
	}
	json_decref(o);
	return rc;
}
