/*
 * ctl_impl.h — what internalctl's files share, and nothing else includes: the parsed
 * command line, the exit codes, the output and usage-error helpers (internalctl.c), and
 * one handler per command (ctl_registry.c, ctl_fleet.c), which internalctl.c's command
 * table names. Not a public interface.
 */
#ifndef INTERNALD_CTL_IMPL_H
#define INTERNALD_CTL_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "registry.h"

/* Exit codes: 0 done, 1 refused input or a failed operation, 2 usage. */
#define EXIT_REFUSED 1
#define EXIT_USAGE   2

/* The command line after the global options are taken out: argv[0] is the command. */
typedef struct {
	const char *db;
	bool db_given; /* --db was on the command line (publish uses it only then) */
	unsigned flags;
	int argc;
	char **argv;
	/* ls and zone's arguments, parsed before the registry is opened */
	const char *what, *org;
	uint32_t ttl;
} cli_t;

/* printf to standard output, remembering why the first failed write failed: main reports
 * it and exits 1 rather than losing it at exit. */
void ctl_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A usage error of command cmd: "internalctl: cmd: message", then its usage line on
 * standard error. Returns EXIT_USAGE. */
int ctl_cmd_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An argument cmd does not take ("unknown option" or "unexpected argument"): EXIT_USAGE. */
int ctl_stray(const char *cmd, const char *arg);

/* export, check, stats: 0 when the command has no argument, else ctl_stray's EXIT_USAGE. */
int ctl_no_args(const cli_t *c);

/* A FILE argument: - (standard input) or a name that is not an option. */
static inline bool ctl_is_file_arg(const char *arg)
{
	return arg[0] != '-' || (arg[1] == '\0');
}

/* Opens the registry at c->db, read-only unless write (then with c->flags). 0, or
 * EXIT_REFUSED after saying why on standard error. */
int ctl_open_reg(const cli_t *c, bool write, reg_t **reg);

/* The commands (ctl_registry.c): each returns the process's exit code. */
int ctl_import(cli_t *c);
int ctl_export(cli_t *c);
int ctl_upgrade(cli_t *c);
int ctl_machine(cli_t *c);
int ctl_ls(cli_t *c);
int ctl_zone(cli_t *c);
int ctl_check(cli_t *c);
int ctl_stats(cli_t *c);

/* The fleet's commands (ctl_fleet.c). */
int ctl_publish(cli_t *c);
int ctl_follow(cli_t *c);
int ctl_mirror(cli_t *c);

#endif
