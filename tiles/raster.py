"""Raster tiles of catalogued orthophotos, DSMs and change maps through titiler.core's TilerFactory.

The factory's path dependency resolves a catalogue id to the file the platform wrote; no route
takes a path or URL from the caller. Without rendering parameters each kind gets a sensible
look: RGB as is, a DSM on the "terrain" colour ramp over its stored display range, a change map's
score band on "ylorrd", transparent below the 0.5 decision threshold so it overlays imagery.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from rio_tiler.colormap import cmap
from titiler.core.dependencies import BidxExprParams, ColorMapParams, ImageRenderingParams
from titiler.core.factory import TilerFactory

from gis.errors import NotFound

# titiler's performance-tuning advice, for COGs on local disk (the HTTP/curl options do not apply)
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per open: the biggest single win
    "GDAL_CACHEMAX": 200,  # MB of block cache per process
    "GDAL_BAND_BLOCK_CACHE": "HASHSET",
    "VSI_CACHE": True,
    "VSI_CACHE_SIZE": 5_000_000,
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,  # our COG headers fit: one read per open
}
SCORE_RANGE = (0.0, 1.0)


def _change_colormap() -> dict:
    ramp = dict(cmap.get("ylorrd"))
    for value in range(128):  # score < 0.5: no change, show the imagery underneath
        ramp[value] = (*ramp[value][:3], 0)
    return ramp


DEFAULT_COLORMAPS = {"dsm": cmap.get("terrain"), "change": _change_colormap()}

CATALOGUE_SQL = ("SELECT id, kind, file_path, band_count, display_min, display_max "
                 "FROM city.orthophoto WHERE id = %s")


async def catalogued_orthophoto(
    request: Request,
    orthophoto_id: Annotated[int, Path(description="id of an orthophoto, DSM or change map in the catalogue")],
) -> dict:
    async with request.app.state.pool.connection() as conn:
        row = await (await conn.execute(CATALOGUE_SQL, [orthophoto_id])).fetchone()
    if row is None:
        raise NotFound(f"no orthophoto with id {orthophoto_id}; see GET /orthophotos")
    return row


Entry = Annotated[dict, Depends(catalogued_orthophoto)]


def orthophoto_path(entry: Entry) -> str:
    return entry["file_path"]


def layer_params(entry: Entry, params: Annotated[BidxExprParams, Depends()]) -> BidxExprParams:
    if entry["kind"] == "change" and not params.indexes and not params.expression:
        params.indexes = [1]  # band 2 (height gain) only on request
    return params


def render_params(entry: Entry, params: Annotated[ImageRenderingParams, Depends()]) -> ImageRenderingParams:
    if params.rescale is None:
        if entry["kind"] == "change":
            params.rescale = [SCORE_RANGE]
        elif entry["kind"] == "dsm" and entry["display_min"] is not None:
            params.rescale = [(entry["display_min"], entry["display_max"])]
    return params


def colormap_params(entry: Entry, chosen: Annotated[dict | None, Depends(ColorMapParams)]):
    if chosen is not None or entry["band_count"] > 2:
        return chosen
    return DEFAULT_COLORMAPS.get(entry["kind"])


def orthophoto_tiler(prefix: str) -> TilerFactory:
    """`prefix` must contain `{orthophoto_id}`; tilejson builds tile URLs under it."""
    return TilerFactory(
        router_prefix=prefix,
        path_dependency=orthophoto_path,
        layer_dependency=layer_params,
        render_dependency=render_params,
        colormap_dependency=colormap_params,
        environment_dependency=lambda: GDAL_ENV,
        add_viewer=False,  # the command wall is the viewer
    )

