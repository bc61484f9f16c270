/*
 * notify — systemd's service notification protocol (sd_notify(3), libsystemd), for
 * Type=notify units: READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1 and STATUS=. The only
 * file that includes a systemd header. Every call is a no-op when NOTIFY_SOCKET is unset
 * (not started by systemd), and none ever fails the caller: a lost notification is
 * systemd's to time out on, not a reason to stop serving.
 */
#ifndef INTERNALD_NOTIFY_H
#define INTERNALD_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

/* READY=1 with STATUS=status (NULL: none): started, or a reload is done. */
void notify_ready(const char *status);
/* RELOADING=1 (with MONOTONIC_USEC=): a reload starts; notify_ready when it ends. */
void notify_reloading(void);
/* STOPPING=1: a stop signal came, the service is going down. */
void notify_stopping(void);
/* STATUS=status: one line for systemctl status. */
void notify_status(const char *status);
/* The watchdog interval systemd set for this process (WatchdogSec=), microseconds; 0 for
 * none. */
uint64_t notify_watchdog_usec(void);

/*
 * A probe of the service: 200 or 503 like /ready and /health, msg (cap bytes) saying
 * why. Called from the watcher's thread: it must be safe from any thread.
 */
typedef int (*notify_probe_fn)(void *arg, char *msg, size_t cap);

/*
 * Starts a thread that tells systemd what the probes see: READY=1 once ready() says 200
 * (every listener bound, the registry open); then WATCHDOG=1 every half watchdog
 * interval, only while health() says 200 (a stalled worker stops the pings, and
 * WatchdogSec= restarts the service), STATUS= the health line when it changes; and
 * STOPPING=1 once ready() says 503 again (a stop signal). Returns 0, or -errno. One
 * watcher per process.
 */
int notify_watch_start(notify_probe_fn ready, notify_probe_fn health, void *arg);
/* Stops and joins the watcher (before arg goes away). A no-op if none runs. */
void notify_watch_stop(void);

#endif
