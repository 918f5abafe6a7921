"""The tile cache on its own: bounded in bytes, evicts by change bbox with a tile of margin, and
refuses tiles built before an invalidation."""

from __future__ import annotations

import morecantile

from tiles.cache import CachedTile, CacheKey, TileCache

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


def key_at(lon: float, lat: float, z: int, layers=("manhole_covers",)) -> CacheKey:
    tile = WEB_MERCATOR.tile(lon, lat, z)
    return CacheKey("WebMercatorQuad", z, tile.x, tile.y, layers)


def test_bounded_in_bytes_least_recently_used_first():
    cache = TileCache(max_bytes=250)
    keys = [key_at(118.0 + i, 34.0, 10) for i in range(3)]
    for key in keys[:2]:
        cache.put(key, CachedTile.of(b"x" * 100), cache.epoch)
    cache.get(keys[0])
    cache.put(keys[2], CachedTile.of(b"y" * 100), cache.epoch)
    assert cache.get(keys[1]) is None and cache.get(keys[0]) and cache.get(keys[2])
    assert cache.size == 200


def test_invalidation_by_bbox_layer_and_margin():
    cache = TileCache(max_bytes=10**6)
    here, neighbour, far = key_at(118.28, 33.96, 16), key_at(118.2855, 33.96, 16), key_at(118.6, 33.7, 16)
    assert neighbour.x == here.x + 1
    other_layer = CacheKey(*[getattr(here, f) for f in ("tms_id", "z", "x", "y")], ("buildings",))
    low = key_at(118.28, 33.96, 3)
    for key in (here, neighbour, far, other_layer, low):
        cache.put(key, CachedTile.of(b"tile"), cache.epoch)
    forgotten = cache.invalidate((118.28, 33.96, 118.28, 33.96), {"manhole_covers"})
    assert forgotten == 3  # the tile itself, its neighbour (margin) and the z3 tile
    assert cache.get(far) and cache.get(other_layer)


def test_huge_bbox_at_high_zoom_tests_cached_tiles_instead_of_enumerating():
    cache = TileCache(max_bytes=10**6)
    deep = key_at(118.28, 33.96, 22)
    cache.put(deep, CachedTile.of(b"tile"), cache.epoch)
    assert cache.invalidate((-180.0, -85.0, 180.0, 85.0), {"manhole_covers"}) == 1


def test_a_tile_built_before_an_invalidation_is_not_stored():
    cache = TileCache(max_bytes=10**6)
    key = key_at(118.28, 33.96, 14)
    epoch = cache.epoch
    cache.invalidate((118.0, 33.0, 119.0, 34.0), {"manhole_covers"})
    cache.put(key, CachedTile.of(b"stale"), epoch)
    assert cache.get(key) is None
