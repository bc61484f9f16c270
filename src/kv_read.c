/*
 * kv_read.c — the reading side of include/kv.h: the ordered push consumer a follower
 * follows with, the pull consumers of a full sync and of a catch-up, and point reads
 * (publish --db). kv.c holds the connection, the bucket and the writes.
 */
#include "kv_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct kv_sub {
	kv_bucket_t *b;
	natsSubscription *sub;
	natsMsg *msg;     /* the message handed out last */
	bool pull;        /* kv_sub_open_pull: messages come a fetched batch at a time */
	natsMsgList list; /* the batch being handed out */
	int next;
	/* kv_sub_open_catchup: pulled while the server has more, then an ordered consumer */
	bool catchup;
	uint64_t cseq;  /* the consumer sequence handed out last (a gap: a fetch's loss) */
	uint64_t after; /* the stream sequence to go on from */
	uint64_t left;  /* messages the server said follow the last one (UINT64_MAX: unknown) */
};

#define PULL_BATCH 2048
/* a catch-up's fetch: messages are known to wait, a whole fetch comes in one answer */
#define CATCHUP_FETCH_MS 2000
/* a catch-up's consumer, from a sequence: a cluster electing a new stream leader may lose
 * the request (no answer ever comes), so the follower's back-off asks again after this,
 * not after a full sync's KV_PULL_CREATE_WAIT_MS (a follower behind an R3 cluster that
 * lost a node waited out 120 s) */
#define CATCHUP_CREATE_WAIT_MS 30000

/* ---- ordered consumer --------------------------------------------------------------------- */

/* s's ordered consumer (s->sub); *jerr: the server's error code. */
static natsStatus push_open(kv_sub_t *s, const char *filter, uint64_t start_seq, jsErrCode *jerr)
{
	kv_bucket_t *b = s->b;
	char subj[256];
	snprintf(subj, sizeof(subj), "%s%s", b->prefix, filter ? filter : ">");
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = b->stream;
	so.Ordered = true;
	so.Config.Heartbeat = 2000LL * 1000 * 1000; /* a dead server shows within ~6 s */
	if (start_seq) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = start_seq;
	} else {
		so.Config.DeliverPolicy = js_DeliverLastPerSubject;
	}
	/* creating a consumer of every key's latest value makes the server index the whole
	 * stream (seconds at a million keys): wait longer than for other requests. One from a
	 * sequence is answered at once, or not at all by a cluster that is electing a new
	 * stream leader: then the caller's back-off asks again, seconds later, not minutes
	 * (a follower waited out 120 s here after a node of an R3 cluster died) */
	jsOptions o;
	jsOptions_Init(&o);
	o.Wait = start_seq ? 5000 : 120000;
	natsStatus st = js_SubscribeSync(&s->sub, b->js, subj, &o, &so, jerr);
	/* bounded client-side buffering; past it the library reports a slow consumer and the
	 * caller starts again from its position (the server pushes a flow-control window
	 * ahead: 16 MiB made the client drop messages; a follower far behind catches up with
	 * kv_sub_open_catchup, which fetches) */
	if (st == NATS_OK)
		st = natsSubscription_SetPendingLimits(s->sub, 1 << 20, 64 << 20);
	return st;
}

/* A subscription's opening: *out = s on success, else s closed and the error (-ENOENT:
 * no such stream). */
static int sub_opened(kv_sub_t *s, natsStatus st, jsErrCode jerr, const char *what, kv_sub_t **out)
{
	if (st == NATS_OK) {
		*out = s;
		return 0;
	}
	int rc = kv_fail(st, what); /* its text, whatever the code */
	if (jerr == JSStreamNotFoundErr)
		rc = -ENOENT;
	kv_sub_close(s);
	return rc;
}

int kv_sub_open(kv_bucket_t *b, const char *filter, uint64_t start_seq, kv_sub_t **out)
{
	kv_sub_t *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->b = b;
	jsErrCode jerr = 0;
	natsStatus st = push_open(s, filter, start_seq, &jerr);
	return sub_opened(s, st, jerr, "subscribe", out);
}

int kv_sub_open_pull(kv_bucket_t *b, uint64_t start_seq, long wait_ms, kv_sub_t **out)
{
	kv_sub_t *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->b = b;
	s->pull = true;
	char subj[256];
	snprintf(subj, sizeof(subj), "%s>", b->prefix);
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = b->stream;
	so.Config.AckPolicy = js_AckNone;
	so.Config.DeliverPolicy = js_DeliverByStartSequence;
	so.Config.OptStartSeq = start_seq ? start_seq : 1;
	so.Config.InactiveThreshold = 60LL * 1000 * 1000 * 1000; /* if we die, it goes */
	/* the server creates the consumer however long it takes (a stream busy with a fleet
	 * of full syncs took seconds, a minute at worst, with 100 at once on 2 cores): a
	 * follower that gave up at 5 s asked again, and every abandoned consumer added to
	 * the load until its inactivity threshold, so wait for the answer instead */
	jsOptions o;
	jsOptions_Init(&o);
	o.Wait = wait_ms > 0 ? wait_ms : KV_PULL_CREATE_WAIT_MS;
	jsErrCode jerr = 0;
	natsStatus st = js_PullSubscribe(&s->sub, b->js, subj, NULL, &o, &so, &jerr);
	return sub_opened(s, st, jerr, "pull subscribe", out);
}

int kv_sub_open_catchup(kv_bucket_t *b, uint64_t start_seq, kv_sub_t **out)
{
	int rc = kv_sub_open_pull(b, start_seq, CATCHUP_CREATE_WAIT_MS, out);
	if (rc)
		return rc;
	(*out)->catchup = true;
	(*out)->after = start_seq ? start_seq : 1;
	(*out)->left = UINT64_MAX;
	return 0;
}

/* A catch-up at the stream's end: the pull consumer goes, an ordered consumer follows on
 * from the message after the last one handed out. */
static natsStatus catchup_done(kv_sub_t *s)
{
	natsMsgList_Destroy(&s->list);
	memset(&s->list, 0, sizeof(s->list));
	s->next = 0;
	if (kv_connected(s->b->c))
		natsSubscription_Unsubscribe(s->sub);
	natsSubscription_Destroy(s->sub);
	s->sub = NULL;
	s->pull = s->catchup = false;
	jsErrCode jerr = 0;
	natsStatus st = push_open(s, NULL, s->after, &jerr);
	if (st == NATS_OK)
		log_info("event=follow catch-up=done seq=%" PRIu64 " fetched=%" PRIu64,
		         s->after - 1, s->cseq);
	return st;
}

/* The batch to fetch: PULL_BATCH, or more while messages wait in the subscription.
 * libnats 3.4.1's fetch (js.c, _fetch) takes the waiting ones first (the rest of an
 * earlier fetch's batch that came after it gave up: a slow server), then asks the server
 * for the batch less those, and reads until it holds exactly that many: with more than
 * half the batch waiting it never does, and writes past its array of batch pointers (at
 * K = 300, 23 followers aborted with "double free or corruption"; a core held a list of
 * 2,585 in an array of 2,048). Asked for twice what waits plus twice PULL_BATCH, it stops
 * at the batch less what waited (unless more than PULL_BATCH more arrive meanwhile). */
static int pull_batch(kv_sub_t *s)
{
	int waiting = 0;
	if (natsSubscription_GetPending(s->sub, &waiting, NULL) != NATS_OK || waiting <= 0)
		return PULL_BATCH;
	return 2 * (waiting + PULL_BATCH);
}

/* The next message of a pull subscription into s->msg, fetching a batch when needed. */
static natsStatus pull_next(kv_sub_t *s, int timeout_ms)
{
	if (s->next >= s->list.Count) {
		natsMsgList_Destroy(&s->list);
		memset(&s->list, 0, sizeof(s->list));
		s->next = 0;
		jsErrCode jerr = 0;
		natsStatus st = natsSubscription_Fetch(&s->list, s->sub, pull_batch(s),
		                                       timeout_ms > 0 ? timeout_ms : 1, &jerr);
		if (st != NATS_OK)
			return st;
		if (s->list.Count == 0)
			return NATS_TIMEOUT;
	}
	s->msg = s->list.Msgs[s->next];
	s->list.Msgs[s->next++] = NULL; /* ours now: destroyed by the next call */
	return NATS_OK;
}

int kv_sub_next(kv_sub_t *s, int timeout_ms, kv_msg_t *m)
{
	natsMsg_Destroy(s->msg);
	s->msg = NULL;
	natsStatus st = NATS_OK;
	bool fetched = s->catchup && s->next >= s->list.Count;
	if (fetched && s->left == 0 && (st = catchup_done(s)) != NATS_OK)
		return kv_fail(st, "subscribe");
	if (s->catchup && fetched && s->left != UINT64_MAX && timeout_ms < CATCHUP_FETCH_MS)
		timeout_ms = CATCHUP_FETCH_MS; /* the server said more messages wait */
	if (s->pull)
		st = pull_next(s, timeout_ms);
	else
		st = natsSubscription_NextMsg(&s->msg, s->sub, timeout_ms > 0 ? timeout_ms : 1);
	if (st == NATS_TIMEOUT && s->catchup && s->left == UINT64_MAX)
		s->left = 0; /* nothing to catch up: an ordered consumer from the next call */
	if (st != NATS_OK)
		return kv_fail(st, "next message");
	jsMsgMetaData *md = NULL;
	st = natsMsg_GetMetaData(&md, s->msg);
	if (st != NATS_OK)
		return kv_fail(st, "message metadata");
	m->seq = md->Sequence.Stream;
	m->pending = md->NumPending;
	uint64_t cseq = md->Sequence.Consumer;
	jsMsgMetaData_Destroy(md);
	if (s->pull) {
		/* no acknowledgements: a fetch's answer lost in transit (a reconnection, a
		 * fetch that expired as its messages came) is a gap in the consumer's
		 * sequence, which the caller must not step over */
		if (s->cseq && cseq != s->cseq + 1) {
			char text[256];
			snprintf(text, sizeof(text),
			         "%s: messages lost in transit before stream sequence %" PRIu64,
			         s->catchup ? "catching up" : "reading the stream", m->seq);
			kv_set_error(text);
			return -EIO;
		}
		s->cseq = cseq;
	}
	if (s->catchup) {
		s->after = m->seq + 1;
		s->left = m->pending;
	}
	const char *subj = natsMsg_GetSubject(s->msg);
	size_t plen = strlen(s->b->prefix);
	m->key = strncmp(subj, s->b->prefix, plen) == 0 ? subj + plen : subj;
	m->value = natsMsg_GetData(s->msg);
	m->len = (size_t)natsMsg_GetDataLength(s->msg);
	m->op = KV_PUT;
	const char *op = NULL;
	if (natsMsgHeader_Get(s->msg, "KV-Operation", &op) == NATS_OK && op) {
		if (strcmp(op, "DEL") == 0)
			m->op = KV_DELETE;
		else if (strcmp(op, "PURGE") == 0)
			m->op = KV_PURGE;
	}
	if (m->op != KV_PUT)
		m->len = 0;
	return 0;
}

uint64_t kv_sub_queued(kv_sub_t *s)
{
	if (s->catchup) /* those fetched, and those the server said wait after them */
		return (uint64_t)(s->list.Count - s->next) + (s->left != UINT64_MAX ? s->left : 0);
	uint64_t n = 0;
	natsSubscription_QueuedMsgs(s->sub, &n);
	return n;
}

void kv_sub_close(kv_sub_t *s)
{
	if (!s)
		return;
	natsMsg_Destroy(s->msg);
	natsMsgList_Destroy(&s->list);
	if (s->sub) {
		/* Unsubscribe also deletes the consumer: a request that, with NATS down, waits
		 * out its 5 s (a SIGTERM with it). Destroy alone drops our interest (libnats
		 * 3.4 and later), and the server removes an ephemeral consumer itself once it
		 * has been inactive for its threshold. */
		if (kv_connected(s->b->c))
			natsSubscription_Unsubscribe(s->sub);
		natsSubscription_Destroy(s->sub);
	}
	free(s);
}

/* ---- point reads (publish --db) ---------------------------------------------------------- */

int kv_get(kv_bucket_t *b, const char *key, int *op, char **value, size_t *len)
{
	char subj[512];
	int rc = kv_subject(b, key, subj, sizeof(subj));
	if (rc)
		return rc;
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetLastMsg(&m, b->js, b->stream, subj, NULL, &jerr);
	if (s != NATS_OK)
		return s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr ? -ENOENT
		                                                          : kv_fail(s, "get");
	const char *kop = NULL;
	*op = natsMsgHeader_Get(m, "KV-Operation", &kop) == NATS_OK && kop
	              ? (strcmp(kop, "PURGE") == 0 ? KV_PURGE : KV_DELETE)
	              : KV_PUT;
	*len = (size_t)natsMsg_GetDataLength(m);
	*value = malloc(*len + 1);
	if (*value) {
		memcpy(*value, natsMsg_GetData(m), *len);
		(*value)[*len] = '\0';
	}
	natsMsg_Destroy(m);
	return *value ? 0 : -ENOMEM;
}
