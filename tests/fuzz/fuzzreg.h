/* fuzzreg.h — the registry every fuzz target starts from: zones/regions.jsonl and
 * zones/demo.jsonl in a new temporary directory. Run the targets from the source tree. */
#ifndef INTERNALD_FUZZREG_H
#define INTERNALD_FUZZREG_H

#include <stdio.h>
#include <stdlib.h>

#include "jsonl.h"

static reg_t *fuzz_registry(const char *target)
{
	char dir[] = "/tmp/internald-fuzz-XXXXXX", err[JSONL_ERR_MAX] = "";
	reg_t *reg;
	FILE *r = fopen("zones/regions.jsonl", "r"), *f = fopen("zones/demo.jsonl", "r");
	if (!mkdtemp(dir) || !r || !f || reg_open(&reg, dir, REG_NOSYNC, 0) ||
	    jsonl_import(reg, r, "regions.jsonl", false, err) ||
	    jsonl_import(reg, f, "demo.jsonl", false, err)) {
		fprintf(stderr, "%s: run from the source tree (%s)\n", target, err);
		exit(1);
	}
	fclose(r);
	fclose(f);
	return reg;
}

#endif
