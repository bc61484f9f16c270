/*
 * follow_sync.c — the full sync: the registry replaced by every key's latest value in one
 * transaction, in chunks of bounded memory; the random delay that spreads a fleet's syncs;
 * follow_mirror.
 */
#include "follow_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "kvkey.h"
#include "log.h"

/* ---- full sync ------------------------------------------------------------------------ */

static size_t full_chunk(const follow_t *fl)
{
	return fl->o->batch_max && fl->o->batch_max < FULL_CHUNK ? fl->o->batch_max : FULL_CHUNK;
}

/* batch_add for a full sync: a sequence refused before (the sync is being tried again)
 * is skipped, not told again. */
static int sync_add(follow_t *fl, const kv_msg_t *m)
{
	int rc = batch_add(&fl->batch, m);
	/* the registry was cleared: a delete the stream held when the sync began changes
	 * nothing (the stream keeps one message a key: no put of its key comes before it),
	 * and it is skipped. One written since may undo a put this sync has read already:
	 * it is applied (deleting what is not there is done; a Machine's delete is
	 * org-checked and gives way to a put of its id in the same chunk, batch_dedupe). */
	if (!rc && m->op != KV_PUT && m->seq <= fl->info.last)
		fl->batch.e[fl->batch.n - 1].superseded = true;
	if (!rc && fl_skipped(fl, m->seq))
		fl->batch.e[fl->batch.n - 1].bad = fl->batch.e[fl->batch.n - 1].told = true;
	return rc;
}

/* The org part of a key that belongs to one (machine., peer., flycast.), into org[64];
 * false for org. and region. keys. */
static bool org_of_key(const char *key, char org[64])
{
	const char *a = strchr(key, '.'), *b = a ? strchr(a + 1, '.') : NULL;
	if (!b || strncmp(key, "org.", 4) == 0 || strncmp(key, "region.", 7) == 0 ||
	    (size_t)(b - a - 1) >= 64)
		return false;
	memcpy(org, a + 1, (size_t)(b - a - 1));
	org[b - a - 1] = '\0';
	return true;
}

/* Whether the chunk itself puts key (an org or region record). */
static bool chunk_puts(const batch_t *b, const char *key)
{
	for (size_t k = 0; k < b->n; k++)
		if (b->e[k].op == KV_PUT && !b->e[k].bad && strcmp(key_of(b, &b->e[k]), key) == 0)
			return true;
	return false;
}

/* Full sync: a record whose org or region is neither in the registry yet nor in its own
 * chunk (that org's or region's latest value comes later in the stream) goes to the
 * spill file, read again once every org and region is in. Bounded memory however the
 * stream is ordered. A delete that sync_add keeps goes there too (as "SEQ KEY", and is
 * applied now as well): its key's put may be in the file, and must not come back. */
static int spill_early(follow_t *fl, reg_txn_t *txn, FILE *spill)
{
	batch_t *b = &fl->batch;
	for (size_t i = 0; i < b->n; i++) {
		entry_t *e = &b->e[i];
		char org[64], region[64], key[80];
		uint32_t net;
		reg_region_t r;
		if (!e->bad && !e->superseded && e->op != KV_PUT &&
		    fprintf(spill, "%" PRIu64 " %s\n", e->seq, key_of(b, e)) < 0)
			return -EIO;
		if (e->bad || e->superseded || e->op != KV_PUT || !org_of_key(key_of(b, e), org))
			continue;
		bool early = false;
		if (reg_org_net(txn, org, strlen(org), &net) != 0) {
			snprintf(key, sizeof(key), "org.%s", org);
			early = !chunk_puts(b, key);
		}
		if (!early &&
		    kvkey_region_of(b->str + e->val, e->len, region, sizeof(region)) == 0 &&
		    reg_get_region(txn, region, strlen(region), &r) != 0) {
			snprintf(key, sizeof(key), "region.%s", region);
			early = !chunk_puts(b, key);
		}
		if (!early)
			continue;
		if (fprintf(spill, "%" PRIu64 " %s %.*s\n", e->seq, key_of(b, e), (int)e->len,
		            b->str + e->val) < 0)
			return -EIO;
		e->superseded = true; /* applied from the spill file instead */
	}
	return 0;
}

static int apply_chunk(follow_t *fl, reg_txn_t *txn, FILE *spill)
{
	batch_t *b = &fl->batch;
	int rc = 0;
	batch_dedupe(b);
	if ((!spill || !(rc = spill_early(fl, txn, spill))) && !(rc = batch_parse(b)))
		rc = batch_apply(b, txn);
	fl_report(fl, b); /* before the batch goes: a sync tried again must skip them */
	if (rc)
		return rc;
	fl->st.applied += jsonl_count(b->j);
	batch_reset(b);
	return 0;
}

/* The spilled records, now that every org is in. */
static int apply_spill(follow_t *fl, reg_txn_t *txn, FILE *spill)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;
	rewind(spill);
	batch_reset(&fl->batch);
	while (!rc && (len = getline(&line, &cap, spill)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		char *key = strchr(line, ' '), *val = key ? strchr(key + 1, ' ') : NULL;
		if (!key)
			continue;
		*key++ = '\0';
		if (val)
			*val++ = '\0';
		kv_msg_t m = {.key = key,
		              .value = val ? val : "",
		              .len = val ? (size_t)(line + len - val) : 0,
		              .op = val ? KV_PUT : KV_DELETE,
		              .seq = strtoull(line, NULL, 10)};
		rc = sync_add(fl, &m);
		if (!rc && fl->batch.n == full_chunk(fl))
			rc = apply_chunk(fl, txn, NULL);
	}
	free(line);
	if (!rc && fl->batch.n)
		rc = apply_chunk(fl, txn, NULL);
	return rc;
}

/* Reads every key's latest value into txn, in chunks. *last: the highest sequence seen. */
static int sync_keys(follow_t *fl, reg_txn_t *txn, uint64_t *last)
{
	kv_sub_t *sub = NULL;
	kv_msg_t m;
	if (fl->info.msgs == 0)
		return 0;
	FILE *spill = tmpfile();
	if (!spill)
		return -errno;
	/* every message the stream holds, in order: with history 1 that is each key's latest
	 * value or delete marker (a consumer of "the latest per key" would make the server
	 * index every key first: 25 s before the first message at a million keys), pulled a
	 * batch at a time so that memory does not depend on how fast we apply */
	/* a fetch's wait, and how many that bring nothing in a row fail the sync */
	int fetch_ms = fl->o->wait_ms ? (int)fl->o->wait_ms : SYNC_FETCH_MS;
	int tries = fl->o->wait_ms ? 1 : SYNC_FETCH_TRIES;
	int rc = kv_sub_open_pull(fl->b, 1, fl->o->wait_ms, &sub);
	batch_reset(&fl->batch);
	/* The end: the server's count of messages pending reads 0, or, once past the
	 * stream's last message as of the start (or a later one: it may have been
	 * superseded since), nothing more comes at once (TAIL_WAIT_MS) or TAIL_S have
	 * passed. The count alone is not enough: with writes going on it may never read 0
	 * (nats-server 2.9 counts a message superseded ahead of the consumer until it
	 * passes), and the next fetch then waited for a full batch, out to its timeout,
	 * and the sync started again: for minutes, while the hub took one write a second.
	 * Reading on past the start's last message takes in the writes made meanwhile
	 * that superseded a key's earlier value (otherwise the key would be missing until
	 * the first live batch). */
	double tail = 0;
	int stalls = 0;
	for (bool done = false; !rc && !done;) {
		bool past = *last >= fl->info.last;
		if (past && tail == 0)
			tail = clock_mono_s() + TAIL_S;
		rc = kv_sub_next(sub, past ? TAIL_WAIT_MS : fetch_ms, &m);
		if (rc == -ETIMEDOUT && past) { /* everything stored now is read */
			rc = fl->batch.n ? apply_chunk(fl, txn, spill) : 0;
			break;
		}
		/* a fetch that brought nothing before the stream's end: a server busy with
		 * other full syncs. The consumer keeps its place; asking again costs nothing,
		 * starting over costs the whole stream (and, a fleet at once, a stampede) */
		if (rc == -ETIMEDOUT && !*fl->o->stop && ++stalls < tries) {
			log_info("event=follow full-sync=slow bucket=%s seq=%" PRIu64
			         " waited_s=%d try=%d",
			         fl->o->bucket, *last, fetch_ms / 1000, stalls);
			rc = 0;
			continue;
		}
		if (!rc)
			stalls = 0;
		if (rc || (rc = sync_add(fl, &m)))
			break;
		if (fl->seen)
			fl->seen(fl->seen_arg, &m);
		if (m.seq > *last)
			*last = m.seq;
		done = m.pending == 0 || (past && clock_mono_s() > tail);
		if (done || fl->batch.n == full_chunk(fl))
			rc = apply_chunk(fl, txn, spill);
	}
	kv_sub_close(sub);
	if (!rc)
		rc = apply_spill(fl, txn, spill);
	fclose(spill);
	return rc;
}

static int full_fn(reg_txn_t *txn, void *arg)
{
	follow_t *fl = arg;
	uint64_t last = 0;
	fl->st.applied = fl->applied_base;
	int rc = reg_clear(txn);
	if (!rc)
		rc = sync_keys(fl, txn, &last);
	if (rc)
		return rc;
	fl->seq = last > fl->info.last ? last : fl->info.last;
	fl->head = fl->seq;
	fl->contact_ns = clock_wall_ns();
	if ((rc = fl_put_position(fl, txn)))
		return rc;
	return pend_save(fl);
}

int full_sync(follow_t *fl)
{
	double t0 = clock_mono_s();
	int rc;
	char detail[96];
	snprintf(detail, sizeof(detail), "stream=%s last_seq=%" PRIu64, fl->info.id, fl->info.last);
	fl_set_state(fl, "full-sync", detail);
	fl->applied_base = fl->st.applied;
	pend_clear(fl); /* what was kept is in the bucket's content, or superseded */
	fl->pend_saved = fl->o->pending_path != NULL; /* an old file goes after the commit */
	fl->tag_ns = clock_wall_ns();
	do
		rc = reg_write(fl->reg, full_fn, fl);
	while (rc == -EAGAIN);
	if (rc)
		return rc;
	pend_forget(fl);
	fl->nskip = 0;
	fl->st.full_syncs++;
	fl->synced = true;
	fl_show(fl);
	log_info("event=follow full-sync=done bucket=%s seq=%" PRIu64 " records=%" PRIu64
	         " skipped=%" PRIu64 " kept=%zu seconds=%.2f",
	         fl->o->bucket, fl->seq, fl->st.applied - fl->applied_base, fl->st.skipped,
	         fl->npend, clock_mono_s() - t0);
	return 0;
}

/* Before a full sync: waits a random part of the spread window (follow_opts_t), the
 * registry answering as it is meanwhile. False when asked to stop while waiting. */
bool spread_wait(follow_t *fl)
{
	double window = fl->o->sync_spread_s;
	if (window == 0) {
		window = (double)fl->info.msgs / FOLLOW_SPREAD_RATE;
		if (window > FOLLOW_SPREAD_MAX_S)
			window = FOLLOW_SPREAD_MAX_S;
	}
	if (window < 0.1) /* a small stream: not worth a wait */
		return true;
	unsigned seed = (unsigned)(clock_wall_ns() ^ ((uint64_t)getpid() * 2654435761u));
	double delay = window * ((double)rand_r(&seed) / ((double)RAND_MAX + 1));
	log_info("event=follow full-sync=delayed bucket=%s seconds=%.2f window=%.2f", fl->o->bucket,
	         delay, window);
	fl_nap(fl, delay);
	return !*fl->o->stop;
}

int follow_mirror(reg_t *reg, kv_bucket_t *b, const char *bucket, long wait_ms, follow_seen_fn seen,
                  void *seen_arg, follow_stats_t *stats)
{
	static volatile sig_atomic_t never;
	follow_opts_t o = {.bucket = bucket, .stop = &never, .wait_ms = wait_ms};
	follow_t fl = {.reg = reg,
	               .o = &o,
	               .b = b,
	               .state = "full-sync",
	               .seen = seen,
	               .seen_arg = seen_arg};
	pthread_mutex_init(&fl.mu, NULL);
	int rc = kv_info(b, &fl.info);
	if (!rc)
		rc = full_sync(&fl);
	if (stats)
		*stats = fl.st;
	batch_free(&fl.batch);
	free(fl.skip);
	pthread_mutex_destroy(&fl.mu);
	pend_clear(&fl);
	free(fl.pend);
	return rc;
}
