/*
 * regions.c — great-circle distances between regions. The coordinates come from the
 * registry's region records, read in the query's transaction; nothing here reads files.
 */
#include "regions.h"

#include <math.h>

double regions_km(double lat1, double lon1, double lat2, double lon2)
{
	const double rad = M_PI / 180.0, earth_km = 6371.0;
	double la1 = lat1 * rad, la2 = lat2 * rad;
	double dla = la2 - la1, dlo = (lon2 - lon1) * rad;
	double h = sin(dla / 2) * sin(dla / 2) + cos(la1) * cos(la2) * sin(dlo / 2) * sin(dlo / 2);
	return 2 * earth_km * asin(sqrt(h < 1 ? h : 1));
}
