/*
 * regions — the platform's region codes with their coordinates (zones/regions.tsv) and
 * the great-circle distance that orders `nearest` answers. Pure after loading.
 */
#ifndef INTERNALD_REGIONS_H
#define INTERNALD_REGIONS_H

#include <stddef.h>

#define REGIONS_MAX 256

typedef struct {
	char code[16];
	double lat, lon; /* degrees */
} region_t;

typedef struct {
	region_t r[REGIONS_MAX];
	size_t n;
} regions_t;

/* Loads "code<TAB>city<TAB>latitude<TAB>longitude" lines ('#' comments allowed).
 * 0, or -errno / -EINVAL with err (errlen bytes) naming the file and line. */
int regions_load(regions_t *out, const char *path, char *err, size_t errlen);
/* The index of a region code (len bytes), or -1. */
int regions_find(const regions_t *r, const char *code, size_t len);
/* Great-circle distance in km between two indexes (haversine, mean Earth radius). */
double regions_km(const regions_t *r, int a, int b);

#endif
