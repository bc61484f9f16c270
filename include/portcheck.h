/*
 * portcheck — is a listen address's port free of every other process, before internald
 * binds its SO_REUSEPORT group there?
 *
 * SO_REUSEPORT lets any process of the same user join a group: a second internald (with
 * another registry) would share the port and half the answers. So internald first binds
 * the address without SO_REUSEPORT and without SO_REUSEADDR, for UDP and for TCP: that
 * fails while anyone holds the port, and the holder is looked up in /proc (the socket's
 * inode in /proc/net/{udp,tcp}{,6}, then the process whose fd is that socket), as NSD
 * refuses to start on a bound port. It never keeps a socket: there is a moment between
 * the check and the bind in which another instance could slip in; two instances started
 * at the same instant on one port are not told apart.
 */
#ifndef INTERNALD_PORTCHECK_H
#define INTERNALD_PORTCHECK_H

#include "config.h"

/*
 * 0 when no socket of another process holds a's address and port (UDP and TCP; port 0 is
 * always free), else -EADDRINUSE (or another bind errno) with err (CFG_ERR_MAX bytes)
 * naming the address, the protocol and the holder ("pid 1234 (internald)", or "a
 * process this user cannot see").
 */
int portcheck_free(const cfg_addr_t *a, char *err);

#endif
