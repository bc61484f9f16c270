/*
 * regions — the great-circle distance that orders `nearest` answers. The regions
 * themselves (code, city, coordinates) are registry records (reg_get_region). Pure.
 */
#ifndef INTERNALD_REGIONS_H
#define INTERNALD_REGIONS_H

/* Great-circle distance in km between two points given in degrees (haversine, mean
 * Earth radius). */
double regions_km(double lat1, double lon1, double lat2, double lon2);

#endif
