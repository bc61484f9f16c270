/*
 * org.c — the organisation of a query (internald(7), ORGANISATIONS) and address parsing.
 *
 * Pure. It must never let a query see another org: a source inside fdaa::/16 always
 * wins over --default-org, and an org resolver address (<prefix>::3) of another
 * network refuses the query outright.
 */
#include "org.h"
#include "bytes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint32_t org_net_of(const uint8_t a[16])
{
	return get_be32(a + 2);
}

bool org_is_6pn(const uint8_t a[16])
{
	return a[0] == 0xfd && a[1] == 0xaa;
}

void org_prefix_of(uint32_t net, uint8_t out[16])
{
	memset(out, 0, 16);
	out[0] = 0xfd, out[1] = 0xaa;
	put_be32(out + 2, net);
}

/* <prefix>::3 of an org network (not fdaa::3 itself). */
static bool is_org_resolver(const uint8_t a[16])
{
	if (!org_is_6pn(a) || org_net_of(a) == 0 || a[15] != 3)
		return false;
	for (int i = 6; i < 15; i++)
		if (a[i])
			return false;
	return true;
}

bool org_prefix_contains(const org_prefix_t *p, const uint8_t a[16])
{
	unsigned full = p->plen / 8, rest = p->plen % 8;
	if (memcmp(p->addr, a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (p->addr[full] & mask) == (a[full] & mask);
}

org_verdict_t org_classify(const org_acl_t *acl, const uint8_t src[16], const uint8_t dst[16],
                           bool has_default, uint32_t default_net, uint32_t *net)
{
	bool allowed = false;
	for (size_t i = 0; i < acl->nallow && !allowed; i++)
		allowed = org_prefix_contains(&acl->allow[i], src);
	if (!allowed)
		return ORG_REFUSED;
	if (org_is_6pn(src)) {
		*net = org_net_of(src);
		if (dst && is_org_resolver(dst) && org_net_of(dst) != *net)
			return ORG_OTHER_ORG;
		return ORG_OK;
	}
	if (!has_default)
		return ORG_NONE;
	*net = default_net;
	return ORG_OK;
}

int org_parse_addr(const char *s, uint8_t out[16])
{
	struct in6_addr a6;
	if (inet_pton(AF_INET6, s, &a6) != 1)
		return -EINVAL;
	memcpy(out, &a6, 16);
	return 0;
}

int org_parse_prefix(const char *s, org_prefix_t *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	char *slash = strchr(buf, '/');
	long plen = -1;
	if (slash) {
		char *end;
		*slash = '\0';
		plen = strtol(slash + 1, &end, 10);
		if (*end || end == slash + 1 || plen < 0)
			return -EINVAL;
	}
	struct in6_addr a6;
	struct in_addr a4;
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET6, buf, &a6) == 1) {
		if (plen > 128)
			return -EINVAL;
		memcpy(out->addr, &a6, 16);
		out->plen = plen < 0 ? 128 : (unsigned)plen;
	} else if (inet_pton(AF_INET, buf, &a4) == 1) {
		if (plen > 32)
			return -EINVAL;
		out->addr[10] = out->addr[11] = 0xff; /* v4-mapped */
		memcpy(out->addr + 12, &a4, 4);
		out->plen = 96 + (plen < 0 ? 32 : (unsigned)plen);
	} else {
		return -EINVAL;
	}
	return 0;
}

int org_parse_network(const char *s, uint32_t *net)
{
	org_prefix_t p;
	if (!strchr(s, '/') || org_parse_prefix(s, &p) || p.plen != 48 || !org_is_6pn(p.addr))
		return -EINVAL;
	for (int i = 6; i < 16; i++)
		if (p.addr[i])
			return -EINVAL;
	*net = org_net_of(p.addr);
	return 0;
}

void org_acl_default(org_acl_t *acl)
{
	static const char *const defaults[] = {"fdaa::/16", "::1/128", "127.0.0.0/8"};
	if (acl->nallow)
		return;
	for (size_t i = 0; i < 3; i++)
		org_parse_prefix(defaults[i], &acl->allow[acl->nallow++]);
}
