/*
 * log — leveled messages to stderr, one line each, safe from any thread. Every line is
 * key=value only: "level=info prog=internald event=... ..." (prog: the program's own
 * name, internald or internalctl). When stderr is the journal (JOURNAL_STREAM names its
 * device:inode, as systemd sets it) each line starts with its syslog priority, "<3>" for
 * an error, "<4>" a warning, "<6>" info, "<7>" debug, so journalctl -p works.
 */
#ifndef INTERNALD_LOG_H
#define INTERNALD_LOG_H

typedef enum { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level_t;

void log_set_level(log_level_t level);
/* "error", "warn", "info", "debug" -> level; -1 if none. */
int log_parse_level(const char *s);
int log_enabled(log_level_t level);
/* fmt gives the line's own key=value pairs, "event=NAME ..." first. */
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) (log_enabled(LOG_DEBUG) ? log_msg(LOG_DEBUG, __VA_ARGS__) : (void)0)

#endif
