"""Coordinate systems of incoming data: EPSG systems via pyproj, and the two Chinese web-map offsets.

GCJ-02 (AMap, Tencent) and BD-09 (Baidu) are not EPSG systems but deterministic distortions of
WGS84; the published formulas below are the same as in the MIT-licensed coordTransform projects
(wandergis/coordTransform_py, wandergis/coordtransform) and googollee/eviltransform, vectorised
with numpy. Their inverses have no closed form, so we invert numerically (fixed-point iteration
converges to well under a millimetre in a few steps). CGCS2000 and WGS84 differ by centimetres,
so "back to WGS84" is taken as EPSG:4490.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from gis.crs import STORAGE_SRID
from gis.errors import InvalidInput

CGCS2000 = CRS.from_epsg(STORAGE_SRID)
OFFSET_SYSTEMS = ("gcj02", "bd09")

_A = 6378245.0  # Krasovsky 1940 semi-major axis, as the GCJ-02 formula uses it
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0

XY = tuple[np.ndarray, np.ndarray]


def _in_china(lng: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The offset applies only inside this box; elsewhere the published formula leaves points alone."""
    return (lng > 72.004) & (lng < 137.8347) & (lat > 0.8293) & (lat < 55.8271)


def _shift_lat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return ret


def _shift_lng(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lng, lat) -> XY:
    lng, lat = np.asarray(lng, dtype=float), np.asarray(lat, dtype=float)
    dlat = _shift_lat(lng - 105.0, lat - 35.0)
    dlng = _shift_lng(lng - 105.0, lat - 35.0)
    radlat = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlng = (dlng * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    inside = _in_china(lng, lat)
    return np.where(inside, lng + dlng, lng), np.where(inside, lat + dlat, lat)


def gcj02_to_bd09(lng, lat) -> XY:
    lng, lat = np.asarray(lng, dtype=float), np.asarray(lat, dtype=float)
    z = np.sqrt(lng * lng + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lng) + 0.000003 * np.cos(lng * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def wgs84_to_bd09(lng, lat) -> XY:
    return gcj02_to_bd09(*wgs84_to_gcj02(lng, lat))


def _invert(forward: Callable[[np.ndarray, np.ndarray], XY], lng, lat, *, tolerance_deg: float = 1e-10) -> XY:
    """Solve forward(w) = target by fixed-point iteration; the offsets vary slowly, so it contracts fast."""
    target_x, target_y = np.asarray(lng, dtype=float), np.asarray(lat, dtype=float)
    x, y = target_x.copy(), target_y.copy()
    for _ in range(30):
        fx, fy = forward(x, y)
        dx, dy = fx - target_x, fy - target_y
        x, y = x - dx, y - dy
        if np.nanmax(np.abs(np.concatenate([np.ravel(dx), np.ravel(dy)])), initial=0.0) < tolerance_deg:
            break
    return x, y


def gcj02_to_wgs84(lng, lat) -> XY:
    return _invert(wgs84_to_gcj02, lng, lat)


def bd09_to_wgs84(lng, lat) -> XY:
    return _invert(wgs84_to_bd09, lng, lat)


@dataclass(frozen=True)
class SourceCrs:
    """How to bring a source's coordinates to CGCS2000: an EPSG/PROJ system, or a web-map offset."""

    name: str
    crs: CRS | None = None

    @property
    def is_offset(self) -> bool:
        return self.crs is None

    def to_cgcs2000(self) -> Callable[[np.ndarray, np.ndarray], XY]:
        if self.name == "gcj02":
            return gcj02_to_wgs84
        if self.name == "bd09":
            return bd09_to_wgs84
        transformer = Transformer.from_crs(self.crs, CGCS2000, always_xy=True)
        return transformer.transform


def parse_crs(text: str) -> SourceCrs:
    """'gcj02', 'bd09', or anything pyproj understands ('EPSG:4548', a WKT, a PROJ string)."""
    key = text.strip().lower().replace("-", "").replace("_", "")
    if key in OFFSET_SYSTEMS:
        return SourceCrs(key)
    try:
        crs = CRS.from_user_input(text.strip())
    except CRSError as exc:
        raise InvalidInput(f"unknown coordinate system {text!r}: use EPSG:4490, EPSG:4548, EPSG:4326, gcj02 or bd09") from exc
    return SourceCrs(crs.to_string(), crs)
