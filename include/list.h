/*
 * list.h — the intrusive doubly linked list that the TCP connections of a worker, the
 * queries on an upstream TCP connection and the cache's CLOCK ring share: a node has two
 * pointer fields the caller names (prev, next), a list is a head pointer (and, for the
 * ring, a tail pointer). Macros, so any node type serves; nothing allocates.
 */
#ifndef INTERNALD_LIST_H
#define INTERNALD_LIST_H

#include <stddef.h>

/* Puts node n at the head of the list *headp. */
#define LIST_PUSH(headp, n, prev, next)                                                            \
	do {                                                                                       \
		(n)->prev = NULL;                                                                  \
		(n)->next = *(headp);                                                              \
		if (*(headp))                                                                      \
			(*(headp))->prev = (n);                                                    \
		*(headp) = (n);                                                                    \
	} while (0)

/* Takes node n out of the list *headp; its links end NULL. Returns nothing; the node it
 * leaves last (when n was) is n's prev, for a caller that keeps a tail. */
#define LIST_UNLINK(headp, n, prev, next)                                                          \
	do {                                                                                       \
		if ((n)->prev)                                                                     \
			(n)->prev->next = (n)->next;                                               \
		else                                                                               \
			*(headp) = (n)->next;                                                      \
		if ((n)->next)                                                                     \
			(n)->next->prev = (n)->prev;                                               \
		(n)->prev = (n)->next = NULL;                                                      \
	} while (0)

#endif
