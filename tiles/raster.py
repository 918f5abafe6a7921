"""Raster tiles of catalogued orthophotos, DSMs and change maps, and of the latest-imagery mosaic.

Tiles are read with rio-tiler from each orthophoto's display COG (aligned to WebMercatorQuad, one
256 px block per tile; `drone.ingest`) and kept in a `tiles.cache.TileCache` of their own, keyed
by tile and format and tagged `orthophotos`: a change to `city.orthophoto` (new, replaced or
deleted image; the change feed) drops the cached tiles its footprint touches, the mosaic's too.
Only catalogue ids reach this module; the file paths come from the catalogue.

Without rendering parameters each kind gets a sensible look: RGB as is, a DSM on the "terrain"
colour ramp over its stored display range, a change map's score band on "ylorrd", transparent
below the 0.5 decision threshold so it overlays imagery.

The mosaic stacks every RGB orthophoto flown on or before a day (default: all), newest on top,
each clipped to its footprint by its mask (rio-tiler's `mosaic_reader`, first valid pixel wins).
The flights and their footprints are read once and kept (`_Flights`, forgotten on any orthophoto
change like the cached tiles): a cold mosaic tile asks the database nothing.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date

import numpy as np
import rasterio
import rasterio.shutil
import shapely
from affine import Affine
from anyio import to_thread
from morecantile import Tile, TileMatrixSet
from psycopg_pool import AsyncConnectionPool
from rio_tiler.colormap import cmap
from rio_tiler.errors import EmptyMosaicError, TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader
from rio_tiler.mosaic.methods import FirstMethod

from gis import orthophotos
from gis.changes import Change
from gis.errors import InvalidInput, NotFound
from gis.settings import settings_of
from tiles.cache import CachedTile, CacheKey, TileCache
from tiles.matrix_sets import CGCS2000_QUAD, WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD, check_tile
from tiles.settings import TileSettings

log = logging.getLogger("cityops.tiles.raster")

# titiler's performance-tuning advice, for COGs on local disk (the HTTP/curl options do not apply)
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per open: the biggest single win
    "GDAL_CACHEMAX": 200 * 2**20,  # block cache per process (rasterio reads an int as bytes, not MB)
    "GDAL_BAND_BLOCK_CACHE": "HASHSET",
    "VSI_CACHE": True,
    "VSI_CACHE_SIZE": 5_000_000,
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,  # our COG headers fit: one read per open
}
TILE_PX = 256
OPEN_COGS = 64  # display COGs whose idle readers are kept (a mosaic viewport reads ~20)
SCORE_RANGE = (0.0, 1.0)
RASTER_TAG = "orthophotos"  # every cached raster tile carries it: any orthophoto change may touch it
# The matrix sets raster tiles are served in: a display COG is aligned to the first; GDAL's OGCAPI
# driver picks WorldCRS84Quad when offered. (GDAL 3.6's reader cannot use any of them: it wants a
# TMS 1.0 document, which TMS 2.0 readers such as morecantile refuse.)
RASTER_MATRIX_SETS: dict[str, TileMatrixSet] = {tms.id: tms for tms in (WEB_MERCATOR_QUAD, WORLD_CRS84_QUAD, CGCS2000_QUAD)}
# extension → (GDAL driver, media type)
FORMATS = {"png": ("PNG", "image/png"), "jpg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
ALIASES = {"jpeg": "jpg"}
MEDIA_TYPE_FORMATS = {media: ext for ext, (_, media) in FORMATS.items()}


def _change_colormap() -> dict:
    ramp = dict(cmap.get("ylorrd"))
    for value in range(128):  # score < 0.5: no change, show the imagery underneath
        ramp[value] = (*ramp[value][:3], 0)
    return ramp


DEFAULT_COLORMAPS = {"dsm": cmap.get("terrain"), "change": _change_colormap()}


def raster_tms(tms_id: str) -> TileMatrixSet:
    try:
        return RASTER_MATRIX_SETS[tms_id]
    except KeyError:
        raise NotFound(f"raster tiles are served in {' and '.join(RASTER_MATRIX_SETS)}, not {tms_id!r}") from None


def tile_format(extension: str | None, accept: str | None = None) -> str:
    """The format named by a tile URL's extension (or `f`), else the first acceptable one, else PNG."""
    if extension:
        name = ALIASES.get(extension.lower(), extension.lower())
        if name not in FORMATS:
            raise InvalidInput(f"unsupported tile format {extension!r}; raster tiles come as png, jpg or webp")
        return name
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in MEDIA_TYPE_FORMATS:
            return MEDIA_TYPE_FORMATS[media]
    return "png"


def media_type(fmt: str) -> str:
    return FORMATS[fmt][1]


@functools.cache
def empty_tile(fmt: str) -> bytes:
    """What a tile with no imagery in it is sent as: fully transparent in PNG and WebP. An empty
    answer (204) is what OGC API Tiles also allows, but GDAL 3.6's OGCAPI reader looks every non-200
    tile up in its disk cache first and logs an ERROR per tile; JPEG cannot be transparent: b"" (204)."""
    if fmt == "jpg":
        return b""
    nothing = np.ma.MaskedArray(np.zeros((3, TILE_PX, TILE_PX), "uint8"), mask=True)
    return ImageData(nothing).render(add_mask=True, img_format=FORMATS[fmt][0])


class RasterTiles:
    def __init__(self, pool: AsyncConnectionPool, cache: TileCache, settings: TileSettings | None = None):
        self.pool = pool
        self.cache = cache
        self.settings = settings or settings_of(TileSettings)
        self._sources: dict[int, dict] = {}  # id → catalogue facts for tiles, forgotten on any orthophoto change
        self._generation = 0
        self._flights: _Flights | None = None  # the mosaic's flights, forgotten on any orthophoto change
        self._readers = _ReaderPool()

    # The cache first: only a valid tile was ever stored, so a hit needs no checks.
    @staticmethod
    def orthophoto_key(orthophoto_id: int, tms_id: str, z: int, x: int, y: int, fmt: str) -> CacheKey:
        return CacheKey(tms_id, z, x, y, (RASTER_TAG, f"orthophoto:{orthophoto_id}"), fmt)

    @staticmethod
    def mosaic_key(tms_id: str, z: int, x: int, y: int, fmt: str, on_day: date | None) -> CacheKey:
        return CacheKey(tms_id, z, x, y, (RASTER_TAG, "mosaic"), f"{fmt}|{on_day or ''}")

    async def orthophoto_tile(self, orthophoto_id: int, tms_id: str, z: int, x: int, y: int, fmt: str) -> CachedTile:
        key = self.orthophoto_key(orthophoto_id, tms_id, z, x, y, fmt)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        tms = raster_tms(tms_id)
        tile = check_tile(tms, z, y, x)
        epoch = self.cache.epoch
        source = await self.source(orthophoto_id)
        if not _meets(tms, tile, source["bbox"]):
            raise TileOutsideBounds(f"tile {z}/{x}/{y} of {tms.id} lies outside orthophoto {orthophoto_id}")
        data = await to_thread.run_sync(self._render_orthophoto, source, tms, tile, fmt)
        built = CachedTile.of(data)
        self.cache.put(key, built, epoch)
        return built

    async def mosaic_tile(self, tms_id: str, z: int, x: int, y: int, fmt: str, on_day: date | None) -> CachedTile:
        """A tile of the latest imagery (as it was on `on_day`); empty bytes where no flight covers it."""
        key = self.mosaic_key(tms_id, z, x, y, fmt, on_day)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        tms = raster_tms(tms_id)
        tile = check_tile(tms, z, y, x)
        epoch = self.cache.epoch
        sources = (await self.flights()).meeting(_bounds(tms, tile), on_day)
        if not sources and on_day is not None:
            async with self.pool.connection() as conn:
                await self.require_flights_by(conn, on_day)
        data = await to_thread.run_sync(self._render_mosaic, sources, tms, tile, fmt) if sources else b""
        built = CachedTile.of(data)
        self.cache.put(key, built, epoch)
        return built

    @staticmethod
    async def require_flights_by(conn, on_day: date) -> None:
        first = await orthophotos.first_flight_day(conn)
        if first is None:
            raise NotFound("no RGB orthophoto has been flown yet, so there is no imagery mosaic")
        if on_day < first:
            raise NotFound(f"no RGB orthophoto was flown on or before {on_day}; the first flight is of {first}")

    async def source(self, orthophoto_id: int) -> dict:
        source = self._sources.get(orthophoto_id)
        if source is None:
            generation = self._generation
            async with self.pool.connection() as conn:
                source = await orthophotos.tile_source(conn, orthophoto_id)
            if generation == self._generation:
                self._sources[orthophoto_id] = source
        return source

    async def flights(self) -> _Flights:
        flights = self._flights
        if flights is None:
            generation = self._generation
            async with self.pool.connection() as conn:
                flights = _Flights(await orthophotos.mosaic_flights(conn))
            if generation == self._generation:
                self._flights = flights
        return flights

    async def on_change(self, change: Change) -> None:
        if not (change.everything or change.table == "city.orthophoto"):
            return
        self._generation += 1
        self._sources.clear()
        self._flights = None
        if change.everything:
            self.cache.clear()
        else:
            forgotten = self.cache.invalidate(change.bbox, {RASTER_TAG})
            log.debug("orthophotos changed in %s: %d cached raster tiles forgotten", change.bbox, forgotten)

    # -- rendering (in a worker thread) ------------------------------------------------------------

    def _render_orthophoto(self, source: dict, tms: TileMatrixSet, tile: Tile, fmt: str) -> bytes:
        kind = source["kind"]
        indexes = [1] if kind == "change" else _colour_bands(source)
        with rasterio.Env(**GDAL_ENV), self._readers.lend(source["path"], tms, self._generation) as reader:
            image = reader.tile(tile.x, tile.y, tile.z, tilesize=TILE_PX, indexes=indexes)
        colormap = None
        if kind == "change":
            image.rescale(in_range=[SCORE_RANGE])
            colormap = DEFAULT_COLORMAPS["change"]
        elif kind == "dsm":
            if source["display_min"] is not None:
                image.rescale(in_range=[(source["display_min"], source["display_max"])])
            colormap = DEFAULT_COLORMAPS["dsm"]
        return self._encode(image, fmt, colormap)

    def registered_tile(self, path: str, band_count: int, correction: Affine, tms_id: str, z: int, x: int, y: int,
                        fmt: str) -> bytes:
        """A tile of an orthophoto moved to where a registration put it: `correction` is a world affine in the
        raster's CRS applied on top of its georeference (the after epoch of a detection, shown at the same
        place as the before epoch). Read from the analysis COG, whose georeference the correction is for."""
        tms = raster_tms(tms_id)
        tile = check_tile(tms, z, y, x)
        moved = f"/vsimem/registered-{uuid.uuid4().hex}.vrt"
        with rasterio.Env(**GDAL_ENV):
            try:
                # a VRT of the file with the corrected georeference (WarpedVRT ignores a src_transform override)
                rasterio.shutil.copy(path, moved, driver="VRT")
                with rasterio.open(moved, "r+") as vrt:
                    vrt.transform = correction @ vrt.transform
                with Reader(moved, tms=tms) as reader:
                    if not reader.tile_exists(tile.x, tile.y, tile.z):
                        raise TileOutsideBounds(f"tile {z}/{x}/{y} of {tms.id} lies outside the registered orthophoto")
                    image = reader.tile(tile.x, tile.y, tile.z, tilesize=TILE_PX,
                                        indexes=_colour_bands({"band_count": band_count}))
            finally:
                if rasterio.shutil.exists(moved):
                    rasterio.shutil.delete(moved)
        return self._encode(image, fmt, None)

    def _render_mosaic(self, sources: Sequence[dict], tms: TileMatrixSet, tile: Tile, fmt: str) -> bytes:
        def read(source: dict, x: int, y: int, z: int) -> ImageData:
            with self._readers.lend(source["path"], tms, self._generation) as reader:
                return reader.tile(x, y, z, tilesize=TILE_PX, indexes=_colour_bands(source))

        try:
            with rasterio.Env(**GDAL_ENV):
                # one after the other, newest first: stops reading once every pixel is filled
                image, _ = mosaic_reader(list(sources), read, tile.x, tile.y, tile.z, threads=0,
                                         pixel_selection=FirstMethod())
        except EmptyMosaicError:
            return b""
        return self._encode(image, fmt, None)

    def _encode(self, image: ImageData, fmt: str, colormap: dict | None) -> bytes:
        driver = FORMATS[fmt][0]
        options = ({"zlevel": self.settings.raster_png_zlevel} if fmt == "png"
                   else {"quality": self.settings.raster_jpeg_quality})
        # JPEG has no transparency: outside the image it shows black, as every JPEG tile server does
        return image.render(add_mask=fmt != "jpg", img_format=driver, colormap=colormap, **options)


class _Flights:
    """The RGB flights, newest first, with their footprints for a vectorised intersection test."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.footprints = shapely.from_wkb([row.pop("footprint_wkb") for row in rows])
        shapely.prepare(self.footprints)
        self.days = np.array([row["flight_day"] for row in rows], dtype="datetime64[D]")

    def meeting(self, bbox: tuple[float, float, float, float], on_day: date | None) -> list[dict]:
        """The flights whose footprint meets `bbox` (EPSG:4490 degrees), flown on or before `on_day`."""
        wanted = shapely.intersects(self.footprints, shapely.box(*bbox))
        if on_day is not None:
            wanted &= self.days <= np.datetime64(on_day, "D")
        return [self.rows[i] for i in np.flatnonzero(wanted)]


class _ReaderPool:
    """Open readers of display COGs, each lent to one thread at a time (a GDAL dataset must not be
    used by two threads at once, but may be by one after another): opening one and rio-tiler's
    reader set-up cost as much as reading a tile's block. All are closed once the catalogue's
    generation moves on (a replaced image has a new path; a deleted one must not stay open)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: OrderedDict[tuple[str, str], list[Reader]] = OrderedDict()
        self._generation = 0

    @contextmanager
    def lend(self, path: str, tms: TileMatrixSet, generation: int) -> Iterator[Reader]:
        key, reader = (path, tms.id), None
        with self._lock:
            self._forget_before(generation)
            idle = self._idle.get(key)
            if idle:
                reader = idle.pop()
        if reader is None:
            reader = Reader(path, tms=tms)
        try:
            yield reader
        finally:
            self._give_back(key, reader, generation)

    def _give_back(self, key: tuple[str, str], reader: Reader, generation: int) -> None:
        closing = [reader]
        with self._lock:
            self._forget_before(generation)
            if generation == self._generation:
                closing = []
                self._idle.setdefault(key, []).append(reader)
                self._idle.move_to_end(key)
                while len(self._idle) > OPEN_COGS:
                    closing.extend(self._idle.popitem(last=False)[1])
        for stale in closing:
            stale.close()

    def _forget_before(self, generation: int) -> None:
        """(Under the lock.) A newer catalogue generation closes every idle reader."""
        if generation > self._generation:
            self._generation = generation
            while self._idle:
                for stale in self._idle.popitem()[1]:
                    stale.close()


def _colour_bands(source: dict) -> list[int]:
    return [1, 2, 3] if source["band_count"] >= 3 else [1]


def _bounds(tms: TileMatrixSet, tile: Tile) -> tuple[float, float, float, float]:
    """The tile's extent in degrees (WGS 84 and CGCS2000 differ by centimetres: either will do)."""
    return tuple(tms.bounds(tile))


def _meets(tms: TileMatrixSet, tile: Tile, bbox: Sequence[float]) -> bool:
    west, south, east, north = _bounds(tms, tile)
    return west < bbox[2] and east > bbox[0] and south < bbox[3] and north > bbox[1]
