/*
 * zone — an org's .internal data as a standard DNS zone file (RFC 1035 master format),
 * written with ldns, loadable by Knot DNS and NSD: the static name forms only (nearest
 * depends on the querier, PTR and .flycast live in other zones).
 */
#ifndef INTERNALD_ZONE_H
#define INTERNALD_ZONE_H

#include <stdint.h>
#include <stdio.h>

#include "registry.h"

/* Writes the zone "internal." of org net to out. 0 or < 0. */
int zone_write(reg_txn_t *txn, uint32_t net, uint32_t ttl, FILE *out);

#endif
