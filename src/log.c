/*
 * log.c — one line per message on stderr: the priority when stderr is the journal, the
 * level, the program's name, then the caller's key=value pairs. stdio's own lock keeps
 * lines whole across worker threads; nothing here allocates.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static log_level_t current = LOG_INFO;
static const char *const names[] = {"error", "warn", "info", "debug"};
/* sd-daemon.h's SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG: only notify.c includes systemd */
static const char *const prio[] = {"<3>", "<4>", "<6>", "<7>"};
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool journal;

/* systemd sets JOURNAL_STREAM=DEV:INODE for a service whose stderr is the journal; a
 * stderr redirected elsewhere (a file, a pipe) no longer matches it. */
static void detect_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
		journal = (unsigned long long)st.st_dev == dev &&
		          (unsigned long long)st.st_ino == ino;
}

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
	pthread_once(&once, detect_journal);
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%slevel=%s prog=%s %s\n", journal ? prio[level] : "", names[level],
	        program_invocation_short_name, line);
}
