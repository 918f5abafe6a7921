"""Reading an ingested orthophoto onto the analysis grid: an analysis COG as ingest writes it (RGB
with an internal mask and overviews) is read by the fast path, and gives what GDAL's warp gives:
the same colours and the same valid cells, the masked part of the flight invalid."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window
from scipy import ndimage

from drone.grid import Grid
from drone.ingest import _write_cog
from drone.ongrid import _VrtView, open_on_grid

SIZE, GSD, K = 1024, 0.1, 4
ORIGIN = (500_000.0, 3_760_000.0)
UNFLOWN_COLUMNS = 300  # the source's mask leaves its west strip out


@pytest.fixture(scope="module", params=["internal mask", "nodata value"])
def ingested(request, tmp_path_factory) -> str:
    """What ingest writes of a flight with an unflown strip: told by an internal mask, or by a nodata value."""
    by_nodata = request.param == "nodata value"
    folder = tmp_path_factory.mktemp("ongrid")
    rng = np.random.default_rng(11)
    texture = ndimage.gaussian_filter(rng.random((SIZE, SIZE)), 6)  # detail at the grid's scale, not below it
    texture = (texture - texture.min()) / np.ptp(texture)
    rgb = np.stack([texture * 180 + 30, texture * 140 + 50, 200 - texture * 120]).astype(np.uint8)
    mask = np.full((SIZE, SIZE), 255, np.uint8)
    mask[:, :UNFLOWN_COLUMNS] = 0
    source = folder / "flight.tif"
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8", crs="EPSG:4548",
                   transform=Affine(GSD, 0, ORIGIN[0], 0, -GSD, ORIGIN[1]), tiled=True, blockxsize=256,
                   blockysize=256, photometric="RGB")
    if by_nodata:
        rgb[:, mask == 0] = 0  # the texture never reaches 0
        profile["nodata"] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(source, "w", **profile) as dst:
        dst.write(rgb)
        if not by_nodata:
            dst.write_mask(mask)
    target = folder / "analysis.tif"
    _write_cog(str(source), target, "rgb")
    return str(target)


CENTRE = (ORIGIN[0] + SIZE * GSD / 2, ORIGIN[1] - SIZE * GSD / 2)


@pytest.mark.parametrize("correction", [Affine.identity(),
                                        Affine.translation(0.13, -0.07) @ Affine.rotation(0.2, pivot=CENTRE)],
                         ids=["aligned", "registered"])
def test_an_ingested_rgb_cog_reads_on_the_grid_as_gdal_warps_it(ingested, correction):
    grid = Grid(CRS.from_epsg(4548), Affine(GSD * K, 0, ORIGIN[0], 0, -GSD * K, ORIGIN[1]), SIZE // K, SIZE // K)
    window = Window(0, 0, grid.width, grid.height)
    with rasterio.open(ingested) as src:
        assert all(flags != [rasterio.enums.MaskFlags.all_valid] for flags in src.mask_flag_enums)  # it has a mask
        fast = open_on_grid(src, grid, correction)
        assert not isinstance(fast, _VrtView)  # the mask no longer sends it down GDAL's warp
        rgb, valid = fast.read(window)
        warped_rgb, warped_valid = _VrtView(src, grid, correction, Resampling.average).read(window)
    edge = UNFLOWN_COLUMNS // K
    assert not valid[:, : edge - 1].any()  # the unflown strip is never valid
    assert valid[3:-3, edge + 3: -3].all()
    # the fast path is the more careful one (a cell's whole spline support must be flown), never the looser
    assert (valid & ~warped_valid).mean() < 0.002 and (warped_valid & ~valid).mean() < 0.05
    both = valid & warped_valid
    difference = np.abs(rgb - warped_rgb)[:, both]
    assert difference.mean() < 1.5 and np.percentile(difference, 99) < 8


@pytest.fixture(scope="module")
def dsm_with_void(tmp_path_factory) -> str:
    """A 0.2 m DSM (sloping ground, a 6 m block, a void where the photogrammetry found no height)."""
    size, gsd = 500, 0.2
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    heights = 20 + 0.01 * cols + 0.02 * rows
    heights[200:300, 150:260] += 6
    heights[60:110, 300:380] = -9999
    path = tmp_path_factory.mktemp("ongrid_dsm") / "dsm.tif"
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32", crs="EPSG:4548",
                       transform=Affine(gsd, 0, ORIGIN[0], 0, -gsd, ORIGIN[1]), nodata=-9999) as dst:
        dst.write(heights, 1)
    return str(path)


@pytest.mark.parametrize("correction", [Affine.identity(), Affine.translation(0.9, -0.4)], ids=["aligned", "shifted"])
def test_a_dsm_on_a_grid_coarser_by_a_fraction_reads_as_gdal_warps_it(dsm_with_void, correction):
    grid = Grid(CRS.from_epsg(4548), Affine(0.5, 0, ORIGIN[0], 0, -0.5, ORIGIN[1]), 200, 200)  # 2.5 DSM pixels
    window = Window(0, 0, grid.width, grid.height)
    with rasterio.open(dsm_with_void) as src:
        fast = open_on_grid(src, grid, correction)
        assert not isinstance(fast, _VrtView)
        heights, _ = fast.read(window)
        warped, _ = _VrtView(src, grid, correction, Resampling.average).read(window)
    warped = np.where(warped == -9999, np.nan, warped)
    void = np.zeros((grid.height, grid.width), bool)
    void[27:42, 125:150] = True  # the void's cells (rows 24-44, columns 120-152 on the grid), well inside either way
    assert np.isnan(heights[void]).all()  # a void stays a void, never a height made up from its edge
    both = np.isfinite(heights) & np.isfinite(warped)
    assert both.mean() > 0.9
    difference = np.abs(heights - warped)[both]
    # ground and roof agree; only cells astride the block's walls differ (bilinear vs a 2.5 px average)
    assert np.median(difference) < 0.02 and np.mean(difference > 1.0) < 0.03
