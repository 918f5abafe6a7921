"""A raster cut short anywhere (inside its pixels, inside the directories of its overviews) is
refused with InvalidRasterError and leaves no file behind: rasterio's public errors are enough to
tell, whichever GDAL call meets the cut first (drone.ingest no longer catches rasterio's private
`rasterio._err` classes, so an escaping one fails here)."""

import pytest
import rasterio

from drone.errors import InvalidRasterError
from drone.ingest import staged_cog
from gis.settings import Settings

CUT_AT = (0.1, 0.3, 0.5, 0.6, 0.7)


@pytest.mark.parametrize("name, kind, overviews", [("before_rgb", "rgb", True), ("after_rgb", "rgb", True),
                                                  ("before_dsm", "dsm", False)])
def test_a_raster_cut_short_is_refused_and_leaves_nothing(unchanged_pair, tmp_path, name, kind, overviews):
    _, pair = unchanged_pair
    source = getattr(pair, name)
    with rasterio.open(source) as src:
        assert bool(src.overviews(1)) == overviews  # with them, the cut can fall inside their directories
    whole = source.read_bytes()
    settings = Settings(state_dir=tmp_path / "state")
    for fraction in CUT_AT:
        cut = tmp_path / f"{name}-{fraction}.tif"
        cut.write_bytes(whole[: int(len(whole) * fraction)])
        with pytest.raises(InvalidRasterError, match="truncated or corrupt|not a raster GDAL can read"):
            with staged_cog(settings, cut, kind):
                pass
        assert not [p for p in (tmp_path / "state").rglob("*") if p.is_file()], fraction
