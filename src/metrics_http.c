/*
 * metrics_http.c — /metrics, /health and /ready over HTTP, with libmicrohttpd on its
 * own thread. The only file that includes microhttpd.h. It never touches a worker:
 * everything it serves comes from the attached met_source_t (internald's: server.h's
 * srv_metrics/srv_health/srv_ready, which read the workers' counters with relaxed loads;
 * internalctl follow's: its own state under a mutex).
 *
 * One source must never keep /health from the orchestrator: each source address holds
 * at most MET_HTTP_PER_SOURCE of the MET_HTTP_CONNECTIONS connections (libmicrohttpd
 * refuses the rest at accept), a connection idle MET_HTTP_IDLE_S is closed by
 * libmicrohttpd, and one that trickles bytes is shut down by the reaper thread once it
 * has been open MET_HTTP_DEADLINE_S, whatever it sends (libmicrohttpd's own timeout is
 * re-armed by every byte).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics_http.h"

#define MET_HTTP_CONNECTIONS 64u /* in all */
#define MET_HTTP_PER_SOURCE  8u  /* from one address */
#define MET_HTTP_IDLE_S      5u  /* silent this long: closed */
#define MET_HTTP_DEADLINE_S  5   /* open this long: shut down, request done or not */

/* An open connection the reaper watches (its socket, from libmicrohttpd). */
typedef struct {
	int fd;      /* -1: a free slot */
	time_t born; /* CLOCK_MONOTONIC seconds */
	bool cut;    /* shut down once */
} conn_slot_t;

struct met_http {
	struct MHD_Daemon *d;
	int fd;
	const char *version, *revision;
	const met_source_t *src; /* atomic: NULL while starting */
	double scrape_seconds;   /* the previous scrape's (MHD's one thread only) */
	/* The reaper: slots are added and removed by MHD's thread (notify_connection,
	 * before MHD closes a socket), read by the reaper, both under lock, so the reaper
	 * never shuts down a descriptor MHD has closed and the kernel has given again. */
	pthread_t reaper;
	pthread_mutex_t lock;
	pthread_cond_t stop_cv;
	bool stopping, reaper_started;
	conn_slot_t conns[MET_HTTP_CONNECTIONS + 1];
};

static time_t mono_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	met_http_t *h = cls;
	(void)socket_context;
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return;
	int fd = ci->connect_fd;
	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < sizeof(h->conns) / sizeof(h->conns[0]); i++) {
		conn_slot_t *s = &h->conns[i];
		if (code == MHD_CONNECTION_NOTIFY_STARTED && s->fd < 0) {
			*s = (conn_slot_t){fd, mono_seconds(), false};
			break;
		}
		if (code == MHD_CONNECTION_NOTIFY_CLOSED && s->fd == fd) {
			s->fd = -1;
			break;
		}
	}
	pthread_mutex_unlock(&h->lock);
}

/* Once a second: a connection open longer than the deadline is shut down (MHD sees the
 * end of its stream and closes it on its own thread). */
static void *reap(void *arg)
{
	met_http_t *h = arg;
	pthread_mutex_lock(&h->lock);
	while (!h->stopping) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&h->stop_cv, &h->lock, &until);
		time_t now = mono_seconds();
		for (size_t i = 0; i < sizeof(h->conns) / sizeof(h->conns[0]); i++) {
			conn_slot_t *s = &h->conns[i];
			if (s->fd >= 0 && !s->cut && now - s->born >= MET_HTTP_DEADLINE_S) {
				shutdown(s->fd, SHUT_RDWR);
				s->cut = true;
			}
		}
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int met_process_read(met_process_t *p)
{
	memset(p, 0, sizeof(*p));
	char buf[2048];
	FILE *f = fopen("/proc/self/stat", "r");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *s = strrchr(buf, ')'); /* the command may hold spaces and parentheses */
	unsigned long utime, stime, vsize;
	unsigned long long start;
	long rss;
	if (!s || sscanf(s + 2,
	                 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d "
	                 "%*d %*d %llu %lu %ld",
	                 &utime, &stime, &start, &vsize, &rss) != 5)
		return -EINVAL;
	double tck = (double)sysconf(_SC_CLK_TCK);
	p->cpu_seconds = (double)(utime + stime) / tck;
	p->virtual_bytes = vsize;
	p->resident_bytes = (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
	unsigned long long btime = 0;
	if ((f = fopen("/proc/stat", "r"))) {
		char line[256];
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "btime %llu", &btime) == 1)
				break;
		fclose(f);
	}
	p->start_time_seconds = (double)btime + (double)start / tck;
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				p->open_fds++;
		closedir(d);
		p->open_fds--; /* the directory's own */
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		p->max_fds = rl.rlim_cur;
	p->present = true;
	return 0;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type, char *text,
                             size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	enum MHD_Result rc = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result plain(struct MHD_Connection *c, unsigned code, const char *msg)
{
	char *t = strdup(msg);
	if (!t)
		return MHD_NO;
	return reply(c, code, "text/plain; charset=utf-8", t, strlen(t));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_len, void **state)
{
	met_http_t *h = cls;
	(void)version, (void)data, (void)data_len, (void)state;
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return plain(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
	const met_source_t *s = __atomic_load_n(&h->src, __ATOMIC_ACQUIRE);
	char msg[1024];
	if (strcmp(url, "/ready") == 0 || strcmp(url, "/health") == 0) {
		if (!s)
			return plain(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting\n");
		int code = url[1] == 'r' ? s->ready(s->arg, msg, sizeof(msg))
		                         : s->health(s->arg, msg, sizeof(msg));
		return plain(c, (unsigned)code, msg);
	}
	if (strcmp(url, "/metrics") == 0) {
		met_snapshot_t snap;
		met_buf_t b = {0};
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		memset(&snap, 0, sizeof(snap));
		if (s && s->snapshot)
			s->snapshot(s->arg, &snap);
		snap.version = h->version;
		snap.revision = h->revision;
		snap.scrape_seconds = h->scrape_seconds;
		met_process_read(&snap.proc);
		int rc = 0;
		if (s && !s->snapshot) {
			if (s->render(s->arg, &b) == 0)
				met_put_process(&b, &snap.proc);
			rc = b.failed ? -ENOMEM : 0;
		} else {
			rc = met_render(&b, &snap);
		}
		if (rc) {
			met_buf_free(&b);
			return plain(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		h->scrape_seconds =
		        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.buf,
		             b.len);
	}
	if (strcmp(url, "/") == 0)
		return plain(c, MHD_HTTP_OK, "internald: /metrics /health /ready\n");
	return plain(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /health or /ready\n");
}

int met_http_start(met_http_t **out, const cfg_addr_t *addr, const char *version,
                   const char *revision, char *err)
{
	met_http_t *h = calloc(1, sizeof(*h));
	int one = 1, e;
	if (!h)
		return -ENOMEM;
	h->version = version;
	h->revision = revision;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->stop_cv, NULL);
	for (size_t i = 0; i < sizeof(h->conns) / sizeof(h->conns[0]); i++)
		h->conns[i].fd = -1;
	h->fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h->fd < 0 || setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    (addr->ss.ss_family == AF_INET6 &&
	     setsockopt(h->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one))) ||
	    bind(h->fd, (const struct sockaddr *)&addr->ss, addr->len) || listen(h->fd, 64)) {
		e = errno;
		snprintf(err, CFG_ERR_MAX, "metrics: cannot listen on %s: %s", addr->text,
		         strerror(e));
		goto fail;
	}
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	getsockname(h->fd, (struct sockaddr *)&ss, &len);
	char host[INET6_ADDRSTRLEN];
	unsigned port;
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (void *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
	} else {
		struct sockaddr_in *a = (void *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
	}
	h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	                                (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	                        0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
	                        MHD_OPTION_CONNECTION_LIMIT, MET_HTTP_CONNECTIONS,
	                        MHD_OPTION_PER_IP_CONNECTION_LIMIT, MET_HTTP_PER_SOURCE,
	                        MHD_OPTION_CONNECTION_TIMEOUT, MET_HTTP_IDLE_S,
	                        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
	if (!h->d) {
		e = EIO;
		snprintf(err, CFG_ERR_MAX, "metrics: libmicrohttpd would not start on %s",
		         addr->text);
		goto fail;
	}
	if ((e = pthread_create(&h->reaper, NULL, reap, h))) {
		MHD_stop_daemon(h->d);
		h->fd = -1; /* MHD closed it */
		snprintf(err, CFG_ERR_MAX, "metrics: cannot start a thread: %s", strerror(e));
		goto fail;
	}
	h->reaper_started = true;
	log_info(ss.ss_family == AF_INET6
	                 ? "event=metrics-listen addr=[%s]:%u paths=/metrics,/health,/ready "
	                   "max_connections=%u per_source=%u deadline_s=%d"
	                 : "event=metrics-listen addr=%s:%u paths=/metrics,/health,/ready "
	                   "max_connections=%u per_source=%u deadline_s=%d",
	         host, port, MET_HTTP_CONNECTIONS, MET_HTTP_PER_SOURCE, MET_HTTP_DEADLINE_S);
	*out = h;
	return 0;
fail:
	if (h->fd >= 0)
		close(h->fd);
	pthread_cond_destroy(&h->stop_cv);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return -e;
}

void met_http_attach(met_http_t *h, const met_source_t *src)
{
	if (h)
		__atomic_store_n(&h->src, src, __ATOMIC_RELEASE);
}

void met_http_stop(met_http_t *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stopping = true;
	pthread_cond_signal(&h->stop_cv);
	pthread_mutex_unlock(&h->lock);
	if (h->reaper_started)
		pthread_join(h->reaper, NULL);
	MHD_stop_daemon(h->d); /* it closes the listening socket it was given */
	pthread_cond_destroy(&h->stop_cv);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
