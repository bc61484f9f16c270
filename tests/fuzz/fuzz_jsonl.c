/* fuzz_jsonl — the importer: any bytes are refused with a message or written; applied
 * in a transaction that is then thrown away, so every input meets the same registry. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzreg.h"

static reg_t *reg;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	reg = fuzz_registry("fuzz_jsonl");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[JSONL_ERR_MAX];
	FILE *f = fmemopen((void *)data, size, "r");
	if (!f)
		return 0;
	jsonl_t *j = NULL;
	int rc = jsonl_parse(f, "fuzz", &j, err);
	fclose(f);
	if (rc) {
		if (!err[0] && rc == -EINVAL)
			abort(); /* a refusal always says why */
		return 0;
	}
	reg_txn_t *t;
	if (reg_txn_begin(reg, true, &t) == 0) {
		rc = jsonl_apply(t, j, size && (data[0] & 1), err);
		if (rc == -EINVAL && !err[0])
			abort();
		if (!rc && reg_check(t, NULL, NULL) != 0)
			abort(); /* whatever was accepted left the indexes consistent */
		reg_txn_abort(t);
	}
	jsonl_free(j);
	return 0;
}
