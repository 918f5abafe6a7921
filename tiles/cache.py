"""An in-process LRU of encoded tiles, bounded in bytes, that forgets tiles when their rows change.

Entries are indexed by (tile matrix set, zoom) and tile column/row so a change's bounding box
evicts just the tiles it can touch, at every cached zoom, one tile of margin around it (tile
buffers, low-zoom counts drawn at their grid's centroid). When the box covers more tiles at a zoom
than the cache holds there, the cached tiles are tested against the box instead of enumerating it.

A tile built from a snapshot taken before a change must not be stored after that change's
eviction: `put` takes the `epoch` read before the build and drops the tile if any invalidation
happened since.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from tiles.matrix_sets import get_tms


@dataclass(frozen=True)
class CacheKey:
    tms_id: str
    z: int
    x: int
    y: int
    layers: tuple[str, ...]
    variant: str = ""  # what else shaped the tile: catalogue version, filter


@dataclass(frozen=True)
class CachedTile:
    data: bytes
    etag: str

    @classmethod
    def of(cls, data: bytes) -> CachedTile:
        return cls(data, '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"')


Bbox = tuple[float, float, float, float]


class TileCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.size = 0
        self.epoch = 0
        self._entries: OrderedDict[CacheKey, CachedTile] = OrderedDict()
        self._index: dict[tuple[str, int], dict[tuple[int, int], set[CacheKey]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CachedTile | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: CacheKey, entry: CachedTile, epoch: int) -> None:
        if epoch != self.epoch or len(entry.data) > self.max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = entry
        self.size += len(entry.data)
        self._index.setdefault((key.tms_id, key.z), {}).setdefault((key.x, key.y), set()).add(key)
        while self.size > self.max_bytes:
            self._remove(next(iter(self._entries)))

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()
        self._index.clear()
        self.size = 0

    def invalidate(self, bbox: Bbox | None, layers: set[str]) -> int:
        """Forget the cached tiles holding any of `layers` that `bbox` (EPSG:4490 degrees; None:
        anywhere) may touch. Returns how many were forgotten."""
        self.epoch += 1
        doomed = []
        for (tms_id, z), cells in self._index.items():
            for cell in self._cells_touched(tms_id, z, cells, bbox):
                doomed.extend(key for key in cells.get(cell, ()) if layers.intersection(key.layers))
        for key in doomed:
            self._remove(key)
        return len(doomed)

    @staticmethod
    def _cells_touched(tms_id: str, z: int, cells: dict, bbox: Bbox | None):
        if bbox is None:
            return list(cells)
        tms = get_tms(tms_id)
        west, south, east, north = bbox
        top_left = tms.tile(west, north, z, truncate=True)
        bottom_right = tms.tile(east, south, z, truncate=True)
        xs = range(top_left.x - 1, bottom_right.x + 2)
        ys = range(top_left.y - 1, bottom_right.y + 2)
        if len(xs) * len(ys) <= len(cells):
            return [(x, y) for x in xs for y in ys]
        return [(x, y) for (x, y) in cells if x in xs and y in ys]

    def _remove(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self.size -= len(entry.data)
        zoom_cells = self._index[(key.tms_id, key.z)]
        keys = zoom_cells[(key.x, key.y)]
        keys.discard(key)
        if not keys:
            del zoom_cells[(key.x, key.y)]
