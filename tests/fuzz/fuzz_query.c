/* fuzz_query — decode + answer against the demo registry: any bytes from any client
 * (UDP or TCP, loopback or a 6PN source) must give a well-formed answer within the
 * limit, or none, never a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "fuzzreg.h"
#include "wire.h"

static reg_t *reg;
static reg_txn_t *txn;
static ans_conf_t conf;
static ans_ctx_t ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	reg = fuzz_registry("fuzz_query");
	if (reg_txn_begin(reg, false, &txn)) {
		fprintf(stderr, "fuzz_query: cannot read the registry\n");
		exit(1);
	}
	conf = (ans_conf_t){.ttl = 5,
	                    .nsid = "fuzz",
	                    .nsid_len = 4,
	                    .region = "ams",
	                    .region_len = 3,
	                    .forward = true};
	org_acl_default(&conf.acl);
	ctx = (ans_ctx_t){
	        .conf = &conf, .txn = txn, .has_default = true, .default_net = 0x18, .rng = 1};
	ctx.cand = calloc(ANS_NEAREST_MAX, sizeof(*ctx.cand));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[WIRE_TCP_MAX];
	ans_client_t cl = {.tcp = size && (data[0] & 1)};
	/* the first byte picks the source: loopback, an alpha Machine, another org */
	cl.src[15] = 1;
	if (size && (data[0] & 2)) {
		const uint8_t m[16] = {0xfd, 0xaa, 0, 0, 0, 0x18, 0x0a, 0x7b,
		                       0x0d, 0x6b, 0, 0, 0, 0x0a, 0,    2};
		memcpy(cl.src, m, 16);
		cl.src[5] = (data[0] & 4) ? 0x18 : 0x19;
	}
	cl.dst[15] = 1;
	size_t n = 0, cap = cl.tcp ? WIRE_TCP_MAX : WIRE_EDNS_SIZE;
	ans_action_t a = ans_process(&ctx, &cl, data, size, out, cap, &n);
	if (a == ANS_REPLY && (n < WIRE_HDR || n > cap || !(out[2] & 0x80)))
		abort();
	if (a == ANS_REPLY && !cl.tcp && n > WIRE_EDNS_SIZE)
		abort();
	return 0;
}
