/*
 * clock — the two clocks every module reads, in nanoseconds. Header-only and trivial:
 * a monotonic clock for intervals and deadlines, the wall clock for times a person or
 * another host reads (the registry's write time, the follower's last contact).
 * Never used on a path that must take its time from the caller (the cache does).
 */
#ifndef INTERNALD_CLOCK_H
#define INTERNALD_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds: only differences between two readings mean anything. */
static inline uint64_t clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* CLOCK_REALTIME in nanoseconds since the Unix epoch. */
static inline uint64_t clock_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The monotonic clock in seconds, for intervals printed or compared as seconds. */
static inline double clock_mono_s(void)
{
	return (double)clock_mono_ns() / 1e9;
}

#endif
