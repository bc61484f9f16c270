/*
 * version — what a build is: the release number (the Makefile's VERSION, semver) and the
 * revision (git describe of the tree built; "" outside a git checkout). Both programs
 * print them for --version, internald logs them at start and in internald_build_info.
 */
#ifndef INTERNALD_VERSION_H
#define INTERNALD_VERSION_H

#ifndef INTERNALD_VERSION
#define INTERNALD_VERSION "unknown"
#endif
#ifndef INTERNALD_REVISION
#define INTERNALD_REVISION ""
#endif

/* "internald 1.0.0 (v1.0.0-3-gc9ce4b6)", or without the parenthesis when there is no
 * revision: the line --version prints on stdout. */
#define VERSION_PRINT(prog)                                                                        \
	printf("%s %s%s%s%s\n", prog, INTERNALD_VERSION, INTERNALD_REVISION[0] ? " (" : "",        \
	       INTERNALD_REVISION, INTERNALD_REVISION[0] ? ")" : "")

#endif
