/*
 * portcheck.c — a listen port held by another process is refused before internald binds
 * its own SO_REUSEPORT group there (include/portcheck.h). Runs once at start, before the
 * workers; it must never keep a socket nor bind with SO_REUSEPORT itself.
 */
#include "portcheck.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
	                                 : ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* The inode of a socket of this family and protocol on port (any address; for TCP a
 * listener), from /proc/net; 0 when none is listed. */
static unsigned long socket_inode(int family, bool tcp, uint16_t port)
{
	char path[32], line[512];
	snprintf(path, sizeof(path), "/proc/net/%s%s", tcp ? "tcp" : "udp",
	         family == AF_INET6 ? "6" : "");
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	unsigned long found = 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char local[64];
		unsigned lport, st;
		unsigned long inode;
		if (sscanf(line, " %*d: %63[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*u %*u %lu", local,
		           &lport, &st, &inode) == 4 &&
		    lport == port && inode && (!tcp || st == 0x0a))
			found = inode;
	}
	fclose(f);
	return found;
}

/* "pid N (comm)" of the process (not this one) with an fd on socket inode; 0 or -1. */
static int socket_holder(unsigned long inode, char *out, size_t cap)
{
	char want[64];
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	DIR *proc = opendir("/proc");
	if (!proc)
		return -1;
	int rc = -1;
	struct dirent *p;
	while (rc && (p = readdir(proc))) {
		long pid = strtol(p->d_name, NULL, 10);
		if (pid <= 0 || pid == (long)getpid())
			continue;
		char dir[64];
		snprintf(dir, sizeof(dir), "/proc/%ld/fd", pid);
		DIR *fds = opendir(dir);
		if (!fds)
			continue; /* another user's: not ours to see */
		struct dirent *d;
		while (rc && (d = readdir(fds))) {
			char link[320], target[64];
			snprintf(link, sizeof(link), "%s/%s", dir, d->d_name);
			ssize_t n = readlink(link, target, sizeof(target) - 1);
			if (n <= 0)
				continue;
			target[n] = '\0';
			if (strcmp(target, want))
				continue;
			char comm[64] = "?";
			snprintf(link, sizeof(link), "/proc/%ld/comm", pid);
			FILE *f = fopen(link, "r");
			if (f) {
				if (fgets(comm, sizeof(comm), f))
					comm[strcspn(comm, "\n")] = '\0';
				fclose(f);
			}
			snprintf(out, cap, "pid %ld (%s)", pid, comm);
			rc = 0;
		}
		closedir(fds);
	}
	closedir(proc);
	return rc;
}

/* Binds a socket without SO_REUSEPORT to a: 0, or -errno. TCP sets SO_REUSEADDR, so a
 * previous run's connections in TIME_WAIT do not count, but a listener does (Linux
 * shares a TCP port by SO_REUSEADDR only between sockets none of which listens); UDP sets
 * neither, so any socket on the port counts. */
static int probe(const cfg_addr_t *a, bool tcp)
{
	int one = 1;
	int fd = socket(a->ss.ss_family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if ((tcp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) ||
	    (a->ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one))) ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len))
		rc = -errno;
	close(fd);
	return rc;
}

int portcheck_free(const cfg_addr_t *a, char *err)
{
	uint16_t port = port_of(&a->ss);
	if (port == 0)
		return 0;
	for (int tcp = 0; tcp < 2; tcp++) {
		int rc = probe(a, tcp);
		if (rc == 0)
			continue;
		if (rc != -EADDRINUSE) /* the bind itself will say it */
			return 0;
		char who[128] = "a process this user cannot see";
		unsigned long inode = socket_inode(a->ss.ss_family, tcp, port);
		if (inode && socket_holder(inode, who, sizeof(who)))
			snprintf(who, sizeof(who), "a process this user cannot see (socket %lu)",
			         inode);
		snprintf(err, CFG_ERR_MAX,
		         "cannot listen on %s: its %s port %u is already held by %s; one internald "
		         "per address and port (stop the other, or choose another --listen)",
		         a->text, tcp ? "TCP" : "UDP", port, who);
		return rc;
	}
	return 0;
}
