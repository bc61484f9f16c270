/*
 * follow_metrics.c — what the follower shows (--metrics): /metrics, /health and /ready,
 * read by the HTTP thread from a copy taken after each commit.
 */
#include "follow_impl.h"

#include <errno.h>
#include <stdio.h>

#include "clock.h"

/* After a commit: the numbers the HTTP thread may read. */
void fl_show(follow_t *fl)
{
	pthread_mutex_lock(&fl->mu);
	fl->shown.st = fl->st;
	fl->shown.seq = fl->seq;
	fl->shown.head = fl->head > fl->seq ? fl->head : fl->seq;
	fl->shown.contact_ns = fl->contact_ns;
	fl->shown.applied_ns = fl->tag_ns;
	fl->shown.changes = fl->changes;
	fl->shown.apply_ns = fl->apply_ns;
	fl->shown.kept = fl->npend;
	fl->shown.synced = fl->synced;
	pthread_mutex_unlock(&fl->mu);
}

int fl_src_ready(void *arg, char *msg, size_t cap)
{
	follow_t *fl = arg;
	pthread_mutex_lock(&fl->mu);
	bool synced = fl->shown.synced;
	pthread_mutex_unlock(&fl->mu);
	if (synced)
		snprintf(msg, cap, "ready\n");
	else
		snprintf(msg, cap, "waiting for the first full sync of bucket %s\n", fl->o->bucket);
	return synced ? 200 : 503;
}

/* 503 while cut off from NATS for longer than --stale-after, or while the head is ahead
 * and nothing has been applied for that long (stuck). */
int fl_src_health(void *arg, char *msg, size_t cap)
{
	follow_t *fl = arg;
	pthread_mutex_lock(&fl->mu);
	uint64_t contact = fl->shown.contact_ns, applied = fl->shown.applied_ns;
	uint64_t seq = fl->shown.seq, head = fl->shown.head;
	pthread_mutex_unlock(&fl->mu);
	double now = (double)clock_wall_ns() / 1e9;
	double stale = fl->o->stale_after > 0 ? fl->o->stale_after : 10;
	double since = now - (double)(contact ? contact : fl->start_ns) / 1e9;
	if (since > stale) {
		snprintf(msg, cap, "no contact with NATS for %.1f s (%s; --stale-after %.0f)\n",
		         since, kv_connected(fl->conn) ? "connected" : "disconnected", stale);
		return 503;
	}
	if (head > seq && applied && now - (double)applied / 1e9 > stale) {
		snprintf(msg, cap, "stuck: %llu changes behind, nothing applied for %.1f s\n",
		         (unsigned long long)(head - seq), now - (double)applied / 1e9);
		return 503;
	}
	snprintf(msg, cap, "ok: seq %llu, head %llu, last contact %.1f s ago\n",
	         (unsigned long long)seq, (unsigned long long)head, since);
	return 200;
}

int fl_src_render(void *arg, met_buf_t *b)
{
	follow_t *fl = arg;
	pthread_mutex_lock(&fl->mu);
	follow_stats_t st = fl->shown.st;
	uint64_t seq = fl->shown.seq, head = fl->shown.head, contact = fl->shown.contact_ns;
	uint64_t changes = fl->shown.changes, apply_ns = fl->shown.apply_ns;
	size_t kept = fl->shown.kept;
	bool synced = fl->shown.synced;
	pthread_mutex_unlock(&fl->mu);
	met_put_gauge(b, "internalctl_follow_nats_connected", "1 while connected to NATS.",
	              kv_connected(fl->conn) ? 1 : 0);
	met_put_counter(b, "internalctl_follow_nats_reconnects_total",
	                "Connections to NATS lost and re-established.", kv_reconnects(fl->conn));
	met_put_gauge(b, "internalctl_follow_synced", "1 once the first full sync has committed.",
	              synced ? 1 : 0);
	met_put_gauge(b, "internalctl_follow_sequence", "The last stream sequence applied.",
	              (double)seq);
	met_put_gauge(b, "internalctl_follow_head_sequence",
	              "The bucket's last stream sequence as NATS last told.", (double)head);
	met_put_gauge(b, "internalctl_follow_last_contact_timestamp_seconds",
	              "When NATS last answered (Unix time; 0: never).", (double)contact / 1e9);
	met_put_counter(b, "internalctl_follow_changes_applied_total",
	                "Changes committed (records and deletes, after deduplication).",
	                st.applied);
	met_put_counter(b, "internalctl_follow_values_refused_total",
	                "Values refused (each logged once as skipped).", st.skipped);
	met_put_gauge(b, "internalctl_follow_kept_changes",
	              "Changes refused for now, kept and tried again after each batch.",
	              (double)kept);
	met_put_counter(b, "internalctl_follow_batches_total", "Live batches committed.",
	                st.batches);
	met_put_counter(b, "internalctl_follow_batch_changes_total",
	                "Changes in those batches (over batches_total: the mean batch size).",
	                changes);
	met_put_counter(b, "internalctl_follow_full_syncs_total", "Full syncs committed.",
	                st.full_syncs);
	met_put_gauge(b, "internalctl_follow_apply_seconds_total",
	              "Time in live batches' transactions (over batches_total: the mean apply "
	              "time).",
	              (double)apply_ns / 1e9);
	return b->failed ? -ENOMEM : 0;
}
