/*
 * jsonl — the registry's input and output format: JSON Lines, one object a line,
 * `kind` first (internald(7), REGISTRY). Import is all or nothing: a file is parsed and
 * validated whole before the registry is touched, then written in one transaction.
 *
 * Errors reach people: each names the file, the line and the field, and says what is
 * wrong, in err (always NUL-terminated).
 */
#ifndef INTERNALD_JSONL_H
#define INTERNALD_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "registry.h"

#define JSONL_ERR_MAX 512

typedef struct jsonl jsonl_t;

/* Parses and validates (syntax, labels, addresses, duplicates) every line of f, named
 * name in messages. Allocates *out (jsonl_free). -EINVAL with err set on bad input,
 * -ENOMEM, -EIO. */
int jsonl_parse(FILE *f, const char *name, jsonl_t **out, char *err);
/* The next line (len bytes, its newline optional, no NUL needed) or NULL at the end. */
typedef const char *(*jsonl_next_fn)(void *arg, size_t *len);
/* jsonl_parse of the lines next gives (a line stays valid until the next call). */
int jsonl_parse_lines(jsonl_next_fn next, void *arg, const char *name, jsonl_t **out, char *err);
void jsonl_free(jsonl_t *j);
/* Records in a parsed file. */
size_t jsonl_count(const jsonl_t *j);

/* Writes a parsed file in txn (orgs first, then the rest in file order), checking what
 * needs the registry: unknown org, address outside the org's /48, addresses in use.
 * replace: empty the registry first. -EINVAL with err set; LMDB codes pass through
 * unchanged (so reg_write can grow the map and retry). */
int jsonl_apply(reg_txn_t *txn, const jsonl_t *j, bool replace, char *err);

/* jsonl_apply of a parsed file in one reg_write transaction (the map grows as needed). */
int jsonl_import_parsed(reg_t *reg, const jsonl_t *j, bool replace, char *err);
/* jsonl_parse + jsonl_import_parsed. */
int jsonl_import(reg_t *reg, FILE *f, const char *name, bool replace, char *err);

/* Writes the whole registry to out in the import format (regions, orgs, Machines by id,
 * peers, Flycast addresses), so that export -> import --replace -> export is the identity. */
int jsonl_export(reg_txn_t *txn, FILE *out);

/* Every Machine and peer names a region the registry holds (internalctl upgrade: schema 3
 * had no region records). -EINVAL with err naming the first that does not. */
int jsonl_check_regions(reg_txn_t *txn, char *err);

#endif
