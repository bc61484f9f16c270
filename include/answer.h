/*
 * answer — one query in, one response out: parse, decide the org, classify the name,
 * read the registry, write the answer. Pure given a read transaction: no sockets, no
 * allocation (the context's scratch is allocated once per worker).
 */
#ifndef INTERNALD_ANSWER_H
#define INTERNALD_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "names.h"
#include "org.h"
#include "regions.h"
#include "registry.h"
#include "wire.h"

#define ANS_NEAREST_MAX 4096 /* more than any response can hold */

typedef struct {
	uint32_t ttl;     /* every answer, and the negative TTL */
	const char *nsid; /* NULL: no NSID */
	size_t nsid_len;
	const char *region; /* the server's own region code for queriers of no known region */
	size_t region_len;  /* 0: none */
	bool forward;       /* names outside our zones: ANS_FORWARD (else REFUSED) */
	org_acl_t acl;
} ans_conf_t;

typedef struct {
	uint32_t dist;
	uint8_t ip[16];
	const char *id; /* into the map: valid for the batch */
	uint8_t id_len;
} ans_cand_t;

typedef struct {
	const ans_conf_t *conf;
	reg_txn_t *txn;   /* a renewed read snapshot (the caller renews per batch) */
	bool has_default; /* --default-org resolved in this snapshot */
	uint32_t default_net;
	uint64_t rng; /* xorshift state for shuffling; seed it non-zero */
	/* The registry cannot answer yet (never synced): every name of our zones is SERVFAIL
	 * with EDE 14 Not Ready; set and cleared by the caller per batch. */
	bool not_ready;
	ans_cand_t *cand; /* ANS_NEAREST_MAX scratch entries, owned by the caller */
	/* What the last ans_process decided, for the server's counters (metrics.h). */
	int last_rcode;   /* the rcode answered (WIRE_BADVERS included); -1: none */
	int last_form;    /* names_form_t answered from the registry, -1: none */
	int last_refused; /* ANS_REFUSED_*, -1: not refused for a policy reason */
	wire_query_t q;   /* the last query parsed; after ANS_FORWARD, the one to forward */
} ans_ctx_t;

/* Why a query was REFUSED (last_refused). */
enum {
	ANS_REFUSED_NOT_ALLOWED, /* org_classify: ORG_REFUSED, a source outside the allow list */
	ANS_REFUSED_OTHER_ORG,   /* org_classify: ORG_OTHER_ORG, another org's resolver address */
	ANS_REFUSED_CLASS,       /* class other than IN */
	ANS_REFUSED_TRANSFER,    /* AXFR, IXFR */
	ANS_REFUSED_NO_ORG,      /* .internal from an allowed source of no org */
	ANS_REFUSED_NO_FORWARD,
};

typedef struct {
	uint8_t src[16], dst[16]; /* IPv6, or v4-mapped */
	bool tcp;
} ans_client_t;

typedef enum { ANS_DROP, ANS_REPLY, ANS_FORWARD } ans_action_t;

/*
 * Answers pkt (len bytes) from client into out (cap bytes, at least WIRE_TCP_MAX for
 * TCP, WIRE_EDNS_SIZE for UDP), setting *outlen. ANS_FORWARD: a name outside our zones
 * that the caller should send upstream (nothing written).
 */
ans_action_t ans_process(ans_ctx_t *ctx, const ans_client_t *client, const uint8_t *pkt, size_t len,
                         uint8_t *out, size_t cap, size_t *outlen);

/*
 * The items of a TXT name form (NAME_VMS, NAME_REGIONS, NAME_APPS, NAME_PEERS,
 * NAME_INSTANCES) in answer order, each with its leading separator ("," or ";") when
 * it is not the first. fn returns non-zero to stop. Returns the number of items or < 0.
 * Shared by the server and `internalctl zone`, so both say the same text.
 */
typedef int (*ans_item_fn)(const char *item, size_t len, void *arg);
int ans_txt_items(reg_txn_t *txn, uint32_t net, names_form_t form, const char *app, size_t app_len,
                  ans_item_fn fn, void *arg);

#endif
