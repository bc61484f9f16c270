/*
 * notify.c — sd_notify(3) for internald and internalctl follow, and internald's watcher
 * thread: it polls the same probes /ready and /health answer from, so systemd's idea of
 * the service can never disagree with what an HTTP check sees. It never touches a
 * worker, and nothing on the query path calls it.
 */
#include "notify.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#define POLL_MS 20 /* how soon a stop signal is told (STOPPING=1) */

static void send_state(const char *state)
{
	if (getenv("NOTIFY_SOCKET"))
		sd_notify(0, state);
}

/* STATUS= is one line: the probes' messages end in a newline, and may hold several. */
static void one_line(char *s)
{
	s[strcspn(s, "\n")] = '\0';
}

void notify_ready(const char *status)
{
	if (!getenv("NOTIFY_SOCKET"))
		return;
	if (status)
		sd_notifyf(0, "READY=1\nSTATUS=%s", status);
	else
		sd_notify(0, "READY=1");
}

void notify_reloading(void)
{
	if (!getenv("NOTIFY_SOCKET"))
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
	           (unsigned long long)ts.tv_sec * 1000000ULL +
	                   (unsigned long long)ts.tv_nsec / 1000);
}

void notify_stopping(void)
{
	send_state("STOPPING=1");
}

void notify_status(const char *status)
{
	if (getenv("NOTIFY_SOCKET"))
		sd_notifyf(0, "STATUS=%s", status);
}

uint64_t notify_watchdog_usec(void)
{
	uint64_t usec = 0;
	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

/* ---- the watcher ---------------------------------------------------------------------- */

static struct {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool running, stop;
	notify_probe_fn ready, health;
	void *arg;
} w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Sleeps POLL_MS, or less when told to stop; true when told. */
static bool nap(void)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += POLL_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L)
		until.tv_sec++, until.tv_nsec -= 1000000000L;
	pthread_mutex_lock(&w.mu);
	while (!w.stop && pthread_cond_timedwait(&w.cv, &w.mu, &until) != ETIMEDOUT)
		;
	bool stop = w.stop;
	pthread_mutex_unlock(&w.mu);
	return stop;
}

static void *watch(void *arg)
{
	(void)arg;
	char msg[512], line[600];
	uint64_t period = notify_watchdog_usec() / 2, next = 0;
	bool ready = false;
	int told = 0; /* the health STATUS= last said: a new line when it changes */
	while (!nap()) {
		int r = w.ready(w.arg, msg, sizeof(msg));
		if (!ready && r != 200)
			continue; /* still starting */
		if (ready && r != 200) {
			notify_stopping(); /* SIGTERM or SIGINT came: the state is stopping */
			break;
		}
		int h = w.health(w.arg, msg, sizeof(msg));
		one_line(msg);
		snprintf(line, sizeof(line), "%s: %s", h == 200 ? "serving" : "unhealthy", msg);
		if (!ready)
			notify_ready(line);
		else if (h != told)
			notify_status(line);
		ready = true, told = h;
		uint64_t now = now_us();
		if (period && h == 200 && now >= next) {
			send_state("WATCHDOG=1");
			next = now + period;
		}
	}
	return NULL;
}

int notify_watch_start(notify_probe_fn ready, notify_probe_fn health, void *arg)
{
	if (!getenv("NOTIFY_SOCKET") || w.running)
		return 0;
	w.ready = ready, w.health = health, w.arg = arg, w.stop = false;
	int rc = pthread_create(&w.thread, NULL, watch, NULL);
	if (rc)
		return -rc;
	w.running = true;
	return 0;
}

void notify_watch_stop(void)
{
	if (!w.running)
		return;
	pthread_mutex_lock(&w.mu);
	w.stop = true;
	pthread_cond_signal(&w.cv);
	pthread_mutex_unlock(&w.mu);
	pthread_join(w.thread, NULL);
	w.running = false;
}
