/*
 * log.c — one line per message on stderr, prefixed with the level. stdio's own lock
 * keeps lines whole across worker threads; nothing here allocates.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static log_level_t current = LOG_INFO;
static const char *const names[] = {"error", "warn", "info", "debug"};

void log_set_level(log_level_t level)
{
	__atomic_store_n(&current, level, __ATOMIC_RELAXED); /* read by every thread */
}

int log_parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

int log_enabled(log_level_t level)
{
	return level <= __atomic_load_n(&current, __ATOMIC_RELAXED);
}

void log_msg(log_level_t level, const char *fmt, ...)
{
	if (level > __atomic_load_n(&current, __ATOMIC_RELAXED))
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "internald: %s: %s\n", names[level], line);
}
