/*
 * org — which organisation a query belongs to, from its source and destination address.
 *
 * Pure: addresses in, verdict out. The 6PN address is fdaa (16 bits) | org network (32)
 * | host (32) | machine (32) | free (16). IPv4 addresses travel as v4-mapped IPv6.
 */
#ifndef INTERNALD_ORG_H
#define INTERNALD_ORG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ORG_ALLOW_MAX 32

typedef struct {
	uint8_t addr[16];
	unsigned plen; /* 0..128, on the v4-mapped form for IPv4 */
} org_prefix_t;

typedef struct {
	org_prefix_t allow[ORG_ALLOW_MAX];
	size_t nallow; /* 0: the default list (fdaa::/16, ::1, 127.0.0.0/8) */
} org_acl_t;

typedef enum {
	ORG_REFUSED,   /* source outside the allow list */
	ORG_OTHER_ORG, /* an allowed source asking another org's resolver address: refused */
	ORG_NONE,      /* allowed, but no org: .internal is REFUSED, forwarding is fine */
	ORG_OK,        /* *net is the org */
} org_verdict_t;

/*
 * The org of a query from src to dst (both 16 bytes). has_default/default_net: the
 * --default-org, for sources outside fdaa::/16.
 */
org_verdict_t org_classify(const org_acl_t *acl, const uint8_t src[16], const uint8_t dst[16],
                           bool has_default, uint32_t default_net, uint32_t *net);

/* Bits 16..47 of a 6PN address. */
uint32_t org_net_of(const uint8_t addr[16]);
/* In fdaa::/16? */
bool org_is_6pn(const uint8_t addr[16]);
/* fdaa:<net>::/48 as its first 6 bytes written to out[16] (rest zero). */
void org_prefix_of(uint32_t net, uint8_t out[16]);

/* "2001:db8::/32", "10.0.0.0/8", or a bare address (host prefix). 0 or -EINVAL. */
int org_parse_prefix(const char *s, org_prefix_t *out);
/* An org network "fdaa:X:Y::/48": exactly a /48 inside fdaa::/16 with no host bits.
 * 0 or -EINVAL. */
int org_parse_network(const char *s, uint32_t *net);
/* An IPv6 address (no prefix) into out. 0 or -EINVAL. */
int org_parse_addr(const char *s, uint8_t out[16]);
bool org_prefix_contains(const org_prefix_t *p, const uint8_t addr[16]);
/* Adds the default allow list entries to acl (when it is empty). */
void org_acl_default(org_acl_t *acl);

#endif
