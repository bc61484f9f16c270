/*
 * testreg.h — helpers shared by the unit tests: a registry in a fresh temporary
 * directory, imports from strings, exports to strings. Header-only (static) so each
 * test program stays one file plus this.
 */
#ifndef INTERNALD_TESTREG_H
#define INTERNALD_TESTREG_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <ldns/ldns.h>

#include "jsonl.h"
#include "registry.h"

/* The EDE (RFC 8914) ldns decodes from p's OPT: its INFO-CODE (text: EXTRA-TEXT, cap
 * bytes with the NUL), or -1 when p has none. */
static inline int ldns_ede(ldns_pkt *p, char *text, size_t cap)
{
	ldns_edns_option_list *l = ldns_pkt_edns_get_option_list(p);
	for (size_t i = 0; l && i < ldns_edns_option_list_get_count(l); i++) {
		ldns_edns_option *o = ldns_edns_option_list_get_option(l, i);
		if (ldns_edns_get_code(o) != LDNS_EDNS_EDE || ldns_edns_get_size(o) < 2)
			continue;
		const uint8_t *d = ldns_edns_get_data(o);
		size_t n = ldns_edns_get_size(o) - 2;
		if (text) {
			n = n < cap - 1 ? n : cap - 1;
			memcpy(text, d + 2, n);
			text[n] = 0;
		}
		return d[0] << 8 | d[1];
	}
	return -1;
}

/* A new empty directory under $TMPDIR; caller frees and removes it (tmp_free). */
static inline char *tmp_new(void)
{
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *dir = malloc(strlen(base) + 32);
	assert_non_null(dir);
	sprintf(dir, "%s/internald-test-XXXXXX", base);
	assert_non_null(mkdtemp(dir));
	return dir;
}

static inline void tmp_free(char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

/* Imports text (JSON Lines); returns the import's result, err filled on failure. */
static inline int import_str(reg_t *reg, const char *text, bool replace, char *err)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	assert_non_null(f);
	int rc = jsonl_import(reg, f, "test.jsonl", replace, err);
	fclose(f);
	return rc;
}

/* The registry as exported JSON Lines; caller frees. */
static inline char *export_str(reg_t *reg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	reg_txn_t *txn;
	assert_non_null(f);
	assert_int_equal(reg_txn_begin(reg, false, &txn), 0);
	assert_int_equal(jsonl_export(txn, f), 0);
	reg_txn_abort(txn);
	fclose(f);
	return buf;
}

/* zones/regions.jsonl (the platform's regions) as text; the tests run from the source
 * tree or build/. */
static inline const char *regions_jsonl(void)
{
	static char buf[1 << 14];
	if (buf[0])
		return buf;
	FILE *f = fopen("zones/regions.jsonl", "r");
	if (!f)
		f = fopen("../zones/regions.jsonl", "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	assert_true(n > 0 && n < sizeof(buf) - 1);
	buf[n] = '\0';
	return buf;
}

/* A new registry in a new temporary directory (*dir, for tmp_free), holding the
 * platform's regions and data. */
static inline reg_t *reg_fixture(char **dir, const char *data)
{
	reg_t *reg;
	char err[JSONL_ERR_MAX];
	*dir = tmp_new();
	assert_int_equal(reg_open(&reg, *dir, REG_NOSYNC, 0), 0);
	if (import_str(reg, regions_jsonl(), false, err) || import_str(reg, data, false, err))
		fail_msg("%s", err);
	return reg;
}

/* The wire form of p, built by ldns, into out (room for it); frees p. */
static inline size_t pkt_wire(ldns_pkt *p, uint8_t *out)
{
	uint8_t *buf;
	size_t len;
	assert_int_equal(ldns_pkt2wire(&buf, p, &len), LDNS_STATUS_OK);
	memcpy(out, buf, len);
	free(buf);
	ldns_pkt_free(p);
	return len;
}

#define ORG_A "{\"kind\":\"org\",\"slug\":\"alpha\",\"network\":\"fdaa:0:18::/48\"}\n"
#define ORG_B "{\"kind\":\"org\",\"slug\":\"beta\",\"network\":\"fdaa:0:19::/48\"}\n"
#define MACHINE(id, org, app, region, ip, state, group, meta)                                      \
	"{\"kind\":\"machine\",\"id\":\"" id "\",\"org\":\"" org "\",\"app\":\"" app               \
	"\",\"region\":\"" region "\",\"private_ip\":\"" ip "\",\"state\":\"" state                \
	"\",\"process_group\":\"" group "\"" meta "}\n"

#endif
