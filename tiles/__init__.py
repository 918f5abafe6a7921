"""Vector tiles: the tile matrix sets, the SQL that builds tiles in PostGIS, the never-stale cache."""
