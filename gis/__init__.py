"""Spatial core of cityops: settings, the PostGIS cluster and pool, migrations, CRS and codes."""
