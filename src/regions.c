/*
 * regions.c — zones/regions.tsv and great-circle distances. Loaded once at start; the
 * query path only reads the table.
 */
#include "regions.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int regions_load(regions_t *out, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	out->n = 0;
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	char line[512];
	unsigned lineno = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char *code = strtok(line, "\t"), *city = strtok(NULL, "\t");
		char *lat = strtok(NULL, "\t"), *lon = strtok(NULL, "\t"), *end1, *end2;
		double la = lat ? strtod(lat, &end1) : 0, lo = lon ? strtod(lon, &end2) : 0;
		if (!code || !city || !lat || !lon || *end1 || *end2 || la < -90 || la > 90 ||
		    lo < -180 || lo > 180 || strlen(code) >= sizeof(out->r[0].code)) {
			snprintf(err, errlen,
			         "%s:%u: want code<TAB>city<TAB>latitude<TAB>longitude", path,
			         lineno);
			rc = -EINVAL;
			break;
		}
		if (out->n == REGIONS_MAX) {
			snprintf(err, errlen, "%s:%u: more than %d regions", path, lineno,
			         REGIONS_MAX);
			rc = -E2BIG;
			break;
		}
		region_t *r = &out->r[out->n++];
		snprintf(r->code, sizeof(r->code), "%s", code);
		r->lat = la, r->lon = lo;
	}
	fclose(f);
	return rc;
}

int regions_find(const regions_t *r, const char *code, size_t len)
{
	for (size_t i = 0; i < r->n; i++)
		if (strlen(r->r[i].code) == len && memcmp(r->r[i].code, code, len) == 0)
			return (int)i;
	return -1;
}

double regions_km(const regions_t *r, int a, int b)
{
	const double rad = M_PI / 180.0, earth_km = 6371.0;
	double la1 = r->r[a].lat * rad, la2 = r->r[b].lat * rad;
	double dla = la2 - la1, dlo = (r->r[b].lon - r->r[a].lon) * rad;
	double h = sin(dla / 2) * sin(dla / 2) + cos(la1) * cos(la2) * sin(dlo / 2) * sin(dlo / 2);
	return 2 * earth_km * asin(sqrt(h < 1 ? h : 1));
}
