/*
 * follow.c — the follower: the fleet's KV bucket into this host's registry.
 *
 * Changes are gathered into a batch (copied out of NATS), handed to jsonl as JSON Lines
 * — a put is its value, a delete the delete record of its key — and written with
 * jsonl_apply inside reg_write(), together with reg_put_follow(). A value
 * that jsonl refuses is remembered by its stream sequence and the batch is parsed or
 * applied again without it: a transaction is never committed half-applied. This file
 * must never learn the registry's key layout nor call NATS other than through kv.h.
 *
 * Live, a second thread gathers and parses the next batch while this one writes the
 * current one (its transaction's commit waits for the disk): a batch owns everything it
 * needs (its parse, its error text, the reasons its entries were refused), and only
 * the writing thread logs and counts refusals, keeps the sequences refused and the
 * statistics.
 */
#include "follow.h"
#include "follow_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "notify.h"

/* Logs a state once per change, as key=value, and tells systemd: READY=1 once live (the
 * first full sync done, or resumed from the stored position), STATUS= always. */
void fl_set_state(follow_t *fl, const char *state, const char *detail)
{
	if (strcmp(fl->state, state) == 0)
		return;
	snprintf(fl->state, sizeof(fl->state), "%s", state);
	log_info("event=follow state=%s bucket=%s%s%s", state, fl->o->bucket, detail ? " " : "",
	         detail ? detail : "");
	char status[160];
	snprintf(status, sizeof(status), "%s bucket=%s%s%s", state, fl->o->bucket,
	         detail ? " " : "", detail ? detail : "");
	if (strcmp(state, "live") == 0)
		notify_ready(status);
	else
		notify_status(status);
}

/* Sleeps up to s seconds, returning early when asked to stop. */
void fl_nap(follow_t *fl, double s)
{
	for (double t = 0; t < s && !*fl->o->stop; t += 0.05)
		nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
}

/* The identity the position is stored with: a regional mirror's is the identity of the
 * hub's stream it mirrors (when the hub answered), since it keeps that stream's
 * sequences: a host that moves to another region's mirror resumes where it was. */
static const char *stream_ident(const follow_t *fl)
{
	return fl->info.origin[0] ? fl->info.origin : fl->info.id;
}

int fl_put_position(follow_t *fl, reg_txn_t *txn)
{
	reg_follow_t f = {.seq = fl->seq,
	                  .applied_ns = fl->tag_ns,
	                  .head = fl->head > fl->seq ? fl->head : fl->seq,
	                  .contact_ns = fl->contact_ns,
	                  .synced = true};
	snprintf(f.bucket, sizeof(f.bucket), "%s", fl->o->bucket);
	snprintf(f.stream, sizeof(f.stream), "%s", stream_ident(fl));
	return reg_put_follow(txn, &f);
}

/* ---- live ------------------------------------------------------------------------------- */

static int live_fn(reg_txn_t *txn, void *arg)
{
	live_arg_t *a = arg;
	/* run again (the map grew at the commit) after the batch was released: its changes
	 * are read again from the stream (live starts over from the position) */
	if (a->b->released)
		return -ESTALE;
	int rc = batch_apply(a->b, txn);
	if (rc || (rc = fl_put_position(a->fl, txn)))
		return rc;
	/* every change of the batch supersedes what was kept of its key before it (the
	 * batch's own refusals were kept by report) */
	for (size_t i = 0; i < a->b->n; i++)
		pend_supersede(a->fl, key_of(a->b, &a->b->e[i]), a->b->e[i].seq);
	if ((rc = pend_save(a->fl)))
		return rc;
	/* what is left is the commit, a wait for the disk: the batch's changes and parse go
	 * now (its refusals were told before this run), and the gatherer parses the next
	 * batch meanwhile, in their room */
	a->b->count = jsonl_count(a->b->j);
	batch_release(a->b);
	if (a->applied)
		a->applied(a->applied_arg);
	return 0;
}

/* Writes the gathered and parsed batch b in one transaction with its position, then
 * tries the changes kept from earlier batches again. */
static int live_batch(follow_t *fl, batch_t *b, void (*applied)(void *), void *applied_arg)
{
	live_arg_t arg = {fl, b, applied, applied_arg};
	int rc;
	fl->seq = b->last;
	fl->tag_ns = clock_wall_ns();
	if (b->head > fl->head)
		fl->head = b->head;
	fl->contact_ns = b->contact_ns;
	uint64_t t0 = clock_wall_ns();
	for (;;) {
		fl_report(fl, b);
		rc = reg_write(fl->reg, live_fn, &arg);
		if (rc != -EAGAIN || (rc = batch_parse(b)))
			break;
	}
	fl->apply_ns += clock_wall_ns() - t0;
	fl->changes += b->n;
	fl_report(fl, b);
	if (rc)
		return rc;
	pend_forget(fl);
	fl->nskip = 0;
	fl->st.batches++;
	fl->st.applied += b->count;
	log_debug("event=follow batch=applied seq=%" PRIu64 " changes=%zu applied=%zu kept=%zu",
	          b->last, b->n, b->count, fl->npend);
	if (fl->npend && b->count)
		rc = pend_retry(fl);
	fl_show(fl);
	return rc;
}

/*
 * The gatherer: a thread one batch ahead of the writer. While the writer applies and
 * commits batch i, it gathers batch 1 - i from the subscription (every change already
 * received, at most cap) and parses it. It touches nothing of the follower but the
 * subscription and its own batch; the writer tells and counts what it refused.
 */
typedef struct {
	kv_sub_t *sub;
	size_t cap;
	uint64_t seq; /* the last sequence gathered (the gatherer's own) */
	volatile sig_atomic_t *stop;
	batch_t b[2];
	int want, done; /* the batch to gather next, the one gathered (-1: none) */
	bool applying;  /* the writer's batch is being applied (its changes and parse in use) */
	bool quit;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
} ahead_t;

/* Waits until the writer's batch is applied (its commit may still be going on). */
static void wait_applied(ahead_t *a)
{
	pthread_mutex_lock(&a->mu);
	while (a->applying && !a->quit)
		pthread_cond_wait(&a->cv, &a->mu);
	pthread_mutex_unlock(&a->mu);
}

/* False once the gatherer is being stopped. */
static bool gathering(ahead_t *a)
{
	pthread_mutex_lock(&a->mu);
	bool go = !a->quit;
	pthread_mutex_unlock(&a->mu);
	return go;
}

/*
 * Memory: while the writer applies batch i (its changes and their parse in memory, about
 * 270 and 320 bytes a change), this gathers batch i + 1 (the changes only), and parses
 * it once batch i is applied and released, during batch i's commit (a wait for the
 * disk): about two batches' changes and one parse, not two of each. Gathering at most
 * half of batch i + 1 before that saved another 13 MiB at the default but left the
 * rest of the gathering to the commit's window: 25% fewer changes a second.
 */
static void gather(ahead_t *a, batch_t *b)
{
	kv_msg_t m;
	batch_reset(b);
	b->rc = kv_sub_next(a->sub, 500, &m);
	if (b->rc == 0 && m.seq <= a->seq)
		b->rc = -ETIMEDOUT; /* a redelivery after the consumer was re-created */
	if (b->rc)
		return;
	a->seq = m.seq;
	b->head = m.seq + m.pending;
	int rc = batch_add(b, &m);
	/* every change already received, and for GATHER_LINGER_S after the first one also
	 * what arrives meanwhile: a burst that NATS's thread is still handing over (changes
	 * written together, an org and its Machines) is one batch, not cut after its first
	 * change because this thread woke before the rest was queued */
	double first = clock_mono_s();
	while (!rc && b->n < a->cap && !*a->stop &&
	       (kv_sub_queued(a->sub) > 0 || clock_mono_s() - first < GATHER_LINGER_S) &&
	       gathering(a) && kv_sub_next(a->sub, 1, &m) == 0) {
		if (m.seq <= a->seq)
			continue;
		a->seq = m.seq;
		b->head = m.seq + m.pending;
		rc = batch_add(b, &m);
	}
	b->contact_ns = clock_wall_ns();
	wait_applied(a);
	if (!rc) {
		batch_dedupe(b);
		rc = batch_parse(b);
	}
	b->prep_rc = rc;
}

static void *ahead_main(void *arg)
{
	ahead_t *a = arg;
	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (a->want < 0 && !a->quit)
			pthread_cond_wait(&a->cv, &a->mu);
		if (a->quit)
			break;
		int i = a->want;
		a->want = -1;
		pthread_mutex_unlock(&a->mu);
		gather(a, &a->b[i]);
		pthread_mutex_lock(&a->mu);
		a->done = i;
		pthread_cond_broadcast(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

static int ahead_start(ahead_t *a, kv_sub_t *sub, size_t cap, uint64_t seq,
                       volatile sig_atomic_t *stop)
{
	*a = (ahead_t){.sub = sub, .cap = cap, .seq = seq, .stop = stop, .want = 0, .done = -1};
	int rc = pthread_mutex_init(&a->mu, NULL);
	if (rc)
		return -rc;
	if ((rc = pthread_cond_init(&a->cv, NULL))) {
		pthread_mutex_destroy(&a->mu);
		return -rc;
	}
	if ((rc = pthread_create(&a->th, NULL, ahead_main, a))) {
		pthread_cond_destroy(&a->cv);
		pthread_mutex_destroy(&a->mu);
		return -rc;
	}
	return 0;
}

/* The batch gathered next. The writer owns it until its next call, which hands it back
 * to be gathered into again; the gatherer starts on the other batch at once. */
static batch_t *ahead_take(ahead_t *a)
{
	pthread_mutex_lock(&a->mu);
	while (a->done < 0)
		pthread_cond_wait(&a->cv, &a->mu);
	int i = a->done;
	a->done = -1;
	a->want = 1 - i;
	a->applying = a->b[i].rc == 0 && a->b[i].prep_rc == 0;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	return &a->b[i];
}

/* The writer's batch is applied (or given up): the gatherer may parse the next one. */
static void ahead_applied(void *arg)
{
	ahead_t *a = arg;
	pthread_mutex_lock(&a->mu);
	a->applying = false;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* Stops the gatherer (after the message it waits for: at most half a second, two while
 * it catches up and a fetch is under way). */
static void ahead_stop(ahead_t *a)
{
	pthread_mutex_lock(&a->mu);
	a->quit = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	pthread_join(a->th, NULL);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	batch_free(&a->b[0]);
	batch_free(&a->b[1]);
}

enum { LIVE_STOP, LIVE_RESYNC, LIVE_RETRY };

/* A transaction of the position alone: the head and the last contact, once a second
 * while the bucket is quiet (applied_ns unchanged: it still tags the kept changes). */
static int beat_fn(reg_txn_t *txn, void *arg)
{
	return fl_put_position(arg, txn);
}

/* While idle: whether the stream is still the one followed and the consumer keeps up
 * (-1: go on; LIVE_RESYNC or LIVE_RETRY with *err otherwise). */
static int idle_check(follow_t *fl, uint64_t seq, int *lagging, int *err)
{
	/* no request while the connection is down: it would wait out its timeout (5 s) and
	 * keep a SIGTERM waiting that long; the consumer resumes once NATS is back */
	if (!kv_connected(fl->conn)) {
		if (!kv_gave_up(fl->conn, NULL, 0))
			return -1;
		*err = -ENOTCONN; /* follow_run's loop says why and stops */
		return LIVE_RETRY;
	}
	kv_info_t now;
	int rc = kv_info(fl->b, &now);
	if (rc) {
		*err = rc;
		return rc == -ENOENT ? LIVE_RESYNC : LIVE_RETRY;
	}
	if (strcmp(now.id, fl->info.id) != 0 || now.last < seq)
		return LIVE_RESYNC;
	/* NATS answered: the registry says so (and what the head is), so that a quiet bucket
	 * and a follower cut off or stuck look different to whoever reads it */
	fl->head = now.last;
	fl->contact_ns = clock_wall_ns();
	if ((rc = reg_write(fl->reg, beat_fn, fl))) {
		*err = rc;
		return LIVE_STOP;
	}
	fl_show(fl);
	/* idle while the stream is ahead twice in a row: the consumer is stuck (a server
	 * lost it); take a new one from where we are */
	*lagging = now.last > seq ? *lagging + 1 : 0;
	return *lagging >= 2 ? LIVE_RETRY : -1;
}

/* Applies changes after position seq until asked to stop (LIVE_STOP), until the stream
 * is another one or lost what we need (LIVE_RESYNC), or until NATS fails (LIVE_RETRY). */
static int live(follow_t *fl, uint64_t seq, int *err)
{
	kv_sub_t *sub = NULL;
	ahead_t a;
	size_t cap = fl->o->batch_max ? fl->o->batch_max : FOLLOW_BATCH_DEFAULT;
	double checked = clock_mono_s();
	/* far behind (after an outage, an upgrade): fetched, a bounded batch at a time, so
	 * that what NATS holds for us is one fetch and not the window its server pushes
	 * ahead; then followed as usual from where that got to */
	bool behind = fl->info.last > seq && fl->info.last - seq >= CATCHUP_MIN;
	int rc = behind ? kv_sub_open_catchup(fl->b, seq + 1, &sub)
	                : kv_sub_open(fl->b, NULL, seq + 1, &sub);
	int lagging = 0, how = LIVE_STOP;
	*err = 0;
	if (rc) {
		*err = rc;
		return LIVE_RETRY;
	}
	if ((rc = ahead_start(&a, sub, cap, seq, fl->o->stop))) {
		kv_sub_close(sub);
		*err = rc;
		return LIVE_STOP;
	}
	char detail[64];
	snprintf(detail, sizeof(detail), "seq=%" PRIu64, seq);
	fl_set_state(fl, "live", detail);
	while (!*fl->o->stop) {
		batch_t *b = ahead_take(&a);
		if (b->rc == -ETIMEDOUT) {
			if (clock_mono_s() - checked < IDLE_CHECK_S)
				continue;
			checked = clock_mono_s();
			if ((how = idle_check(fl, seq, &lagging, err)) >= 0)
				break;
			how = LIVE_STOP;
			fl_set_state(fl, "live", detail);
			continue;
		}
		if (b->rc) {
			*err = b->rc;
			how = LIVE_RETRY;
			break;
		}
		lagging = 0;
		rc = b->prep_rc ? b->prep_rc : live_batch(fl, b, ahead_applied, &a);
		ahead_applied(&a);
		if (rc == -ESTALE) { /* read the batch again from the position: nothing lost */
			how = LIVE_RETRY;
			break;
		}
		if (rc) {
			*err = rc;
			break;
		}
		seq = b->last;
		snprintf(detail, sizeof(detail), "seq=%" PRIu64, seq);
	}
	ahead_stop(&a);
	kv_sub_close(sub);
	return how;
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* Whether the registry's position can be resumed from in the stream now known. */
static bool resumable(follow_t *fl, uint64_t *seq)
{
	reg_txn_t *txn;
	reg_follow_t f;
	if (reg_txn_begin(fl->reg, false, &txn))
		return false;
	int rc = reg_get_follow(txn, &f);
	reg_txn_abort(txn);
	if (rc)
		return false;
	*seq = f.seq;
	fl->seq = f.seq;
	fl->tag_ns = f.applied_ns;
	fl->head = f.head;
	/* history 1: a stream drops older messages of a key; one that dropped messages past
	 * our position may have dropped a delete marker too, so only a stream that still
	 * holds everything after seq is resumed */
	bool same = strcmp(f.stream, fl->info.id) == 0 ||
	            (fl->info.origin[0] && strcmp(f.stream, fl->info.origin) == 0);
	return strcmp(f.bucket, fl->o->bucket) == 0 && same && f.seq <= fl->info.last &&
	       (fl->info.first == 0 || fl->info.first <= f.seq + 1) && pend_load(fl, &f);
}

/* Says why NATS cannot be followed now (state waiting or bucket-missing), then waits the
 * back-off, doubled for the next time (up to 5 s). Returns 0: an error waited out is none
 * (a stop asked for meanwhile ends follow_run with 0, as a service manager expects). */
static int retry_later(follow_t *fl, int rc, double *backoff)
{
	char detail[160];
	snprintf(detail, sizeof(detail), "error=\"%s\"", kv_strerror(rc));
	fl_set_state(fl, rc == -ENOENT ? "bucket-missing" : "waiting", detail);
	fl_nap(fl, *backoff);
	*backoff = *backoff < 2.5 ? *backoff * 2 : 5;
	return 0;
}

/* A registry the follower starts on says so before anything is synced into it, so that
 * internald knows not to answer from it yet (no position: nothing synced). */
static int mark_fn(reg_txn_t *txn, void *arg)
{
	const follow_t *fl = arg;
	reg_follow_t f = {.synced = false};
	if (reg_get_follow(txn, &f) == 0)
		return 0;
	snprintf(f.bucket, sizeof(f.bucket), "%s", fl->o->bucket);
	return reg_put_follow(txn, &f);
}

int follow_run(reg_t *reg, const follow_opts_t *o, follow_stats_t *stats)
{
	follow_t fl = {.reg = reg, .o = o, .start_ns = clock_wall_ns()};
	/* a batch's large buffers (its changes, their parse: tens of MiB) are mapped apart
	 * and unmapped when freed: glibc would otherwise raise this threshold after the first
	 * such free and keep later batches in its arenas, whose freed middle stays resident */
	mallopt(M_MMAP_THRESHOLD, BATCH_MMAP_MIN);
	int rc = reg_write(reg, mark_fn, &fl);
	if (rc) {
		log_error("event=follow status=failed reason=\"cannot write the registry: %s\"",
		          reg_strerror(rc));
		return rc;
	}
	reg_txn_t *txn;
	reg_follow_t f;
	if (reg_txn_begin(reg, false, &txn) ==
	    0) { /* what a restart shows before its first commit */
		if (reg_get_follow(txn, &f) == 0 && f.synced) {
			fl.synced = true;
			fl.seq = f.seq, fl.head = f.head, fl.tag_ns = f.applied_ns;
		}
		reg_txn_abort(txn);
	}
	rc = kv_connect_opts(&fl.conn, o->nats, true);
	if (rc) {
		log_error(
		        "event=follow status=failed reason=\"cannot start a NATS connection: %s\"",
		        kv_strerror(rc));
		return rc;
	}
	if (o->js_domain && (rc = kv_set_domain(fl.conn, o->js_domain))) {
		log_error("event=follow status=failed reason=\"--js-domain '%s': not a JetStream "
		          "domain "
		          "name\"",
		          o->js_domain);
		kv_close(fl.conn);
		return rc;
	}
	pthread_mutex_init(&fl.mu, NULL);
	fl_show(&fl);
	const met_source_t src = {.arg = &fl,
	                          .ready = fl_src_ready,
	                          .health = fl_src_health,
	                          .render = fl_src_render};
	met_http_attach(o->http, &src);
	double backoff = 0.1;
	bool spread = false; /* the delay before this full sync was waited already */
	rc = 0;
	while (!*o->stop) {
		if (!kv_connected(fl.conn)) { /* as in idle_check: no request to wait out */
			char why[256];
			if (kv_gave_up(fl.conn, why, sizeof(why))) {
				/* libnats never tries again: exit, and let the service manager
				 * start us again (with the credentials' files read anew) */
				log_error("event=follow status=failed reason=\"NATS gave up the "
				          "connection: %s\"",
				          why);
				rc = -ECONNREFUSED;
				break;
			}
			retry_later(&fl, -ENOTCONN, &backoff);
			continue;
		}
		if (!fl.b && (rc = kv_bucket_open(fl.conn, o->bucket, 0, 0, &fl.b))) {
			rc = retry_later(&fl, rc, &backoff);
			continue;
		}
		if ((rc = kv_info(fl.b, &fl.info))) {
			if (rc == -ENOENT)
				kv_bucket_close(fl.b), fl.b = NULL;
			rc = retry_later(&fl, rc, &backoff);
			continue;
		}
		uint64_t seq = 0;
		if (!resumable(&fl, &seq)) {
			if (!spread) {
				spread = true; /* then look at the stream again: it moved on */
				if (!spread_wait(&fl))
					break;
				continue;
			}
			spread = false;
			rc = full_sync(&fl);
			if (rc == -ENOTCONN || rc == -ETIMEDOUT || rc == -EIO || rc == -ENOENT) {
				rc = retry_later(&fl, rc, &backoff);
				continue;
			}
			if (rc) {
				log_error("event=follow full-sync=failed reason=\"%s\"",
				          reg_strerror(rc));
				break;
			}
			seq = fl.seq;
		}
		int err = 0;
		int how = live(&fl, seq, &err);
		if (how == LIVE_STOP) {
			rc = err;
			if (rc)
				log_error("event=follow status=failed reason=\"cannot write the "
				          "registry: %s\"",
				          reg_strerror(rc));
			break;
		}
		if (how == LIVE_RESYNC) {
			/* look the bucket up again: it may have been deleted and recreated */
			kv_bucket_close(fl.b);
			fl.b = NULL;
		}
		if (err) {
			retry_later(&fl, err, &backoff);
		} else {
			backoff = 0.1;
		}
	}
	notify_stopping();
	if (!rc)
		log_info("event=follow state=stopped bucket=%s applied=%" PRIu64 " skipped=%" PRIu64
		         " batches=%" PRIu64,
		         o->bucket, fl.st.applied, fl.st.skipped, fl.st.batches);
	if (stats)
		*stats = fl.st;
	batch_free(&fl.batch);
	free(fl.skip);
	met_http_stop(o->http); /* joins its thread: no request reads fl after this */
	pthread_mutex_destroy(&fl.mu);
	pend_clear(&fl);
	free(fl.pend);
	kv_bucket_close(fl.b);
	kv_close(fl.conn);
	return rc;
}
