/*
 * jsonl_impl.h — what the JSON Lines files share and nothing else includes: the parsed
 * records, the arena they live in, the parse context and its error helper. The contract
 * for callers is include/jsonl.h; this header is not part of it.
 *
 *   jsonl.c         reading lines, apply and import, export, the region check
 *   jsonl_fields.c  the fields of each record kind: validation and parsing into a rec_t,
 *                   the arena and the duplicate set
 */
#ifndef INTERNALD_JSONL_IMPL_H
#define INTERNALD_JSONL_IMPL_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "jsonl.h"

enum kind { K_ORG, K_MACHINE, K_PEER, K_FLYCAST, K_REGION, K_N };

typedef struct {
	uint8_t kind;
	bool del;
	bool skip_dns;
	uint8_t nmeta, nchecks;
	unsigned line;
	const char *org; /* the slug of an org record; the owning org otherwise */
	const char *id;  /* Machine id, or the peer's name */
	const char *app, *region, *group, *state;
	uint8_t ip[16];
	uint32_t net; /* org records */
	reg_meta_t *meta;
	reg_check_t *checks;
	double lat, lon; /* region records (id is the code, app the city name) */
} rec_t;

typedef struct block {
	struct block *next;
	size_t used, cap;
	char data[];
} block_t;

struct jsonl {
	char name[256];
	rec_t *recs;
	size_t n, cap;
	block_t *arena;
	/* duplicate detection: open addressing over "kind\0key" strings in the arena */
	const char **set;
	size_t set_cap, set_n;
};

/* FNV-1a: the duplicate set (jsonl_fields.c) and apply's address sets (jsonl.c). */
static inline uint64_t hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
	return h;
}

typedef struct {
	jsonl_t *j;
	unsigned line;
	char *err;
} ctx_t;

__attribute__((format(printf, 3, 4))) static inline int fail(ctx_t *c, const char *field,
                                                             const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (field)
		snprintf(c->err, JSONL_ERR_MAX, "%.150s:%u: field '%.100s': %s", c->j->name,
		         c->line, field, what);
	else
		snprintf(c->err, JSONL_ERR_MAX, "%.150s:%u: %s", c->j->name, c->line, what);
	return -EINVAL;
}

/* Validates one JSON object and fills r from it (jsonl_fields.c). */
int parse_record(ctx_t *c, json_t *o, rec_t *r);

#endif
