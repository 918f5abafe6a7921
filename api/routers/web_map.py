"""Serves the command wall at /map: the app's own files and MapLibre GL JS from web_map/node_modules.
Everything the browser needs comes from here, so the wall runs with no internet access."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from api.extension import Extension
from gis.errors import NotFound
from gis.settings import PROJECT_ROOT

APP_DIR = PROJECT_ROOT / "web_map" / "app"
MAPLIBRE_DIST = PROJECT_ROOT / "web_map" / "node_modules" / "maplibre-gl" / "dist"
VENDOR_PREFIX = "vendor/maplibre-gl/"
# Python 3.11's mimetypes lacks .mjs; a module script with another type is refused by browsers.
MEDIA_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".css": "text/css", ".html": "text/html",
               ".png": "image/png", ".svg": "image/svg+xml", ".json": "application/json", ".map": "application/json"}


def _resolve(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise NotFound(f"no file /map/{relative}")
    return path


def web_map_extension() -> Extension:
    router = APIRouter(tags=["Command wall"], include_in_schema=False)

    @router.get("/map")
    async def wall_root():
        return RedirectResponse("/map/")

    @router.get("/map/{relative:path}")
    async def wall_file(relative: str):
        if relative.startswith(VENDOR_PREFIX):
            path = _resolve(MAPLIBRE_DIST, relative.removeprefix(VENDOR_PREFIX))
        else:
            path = _resolve(APP_DIR, relative or "index.html")
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix), headers={"Cache-Control": "no-cache"})

    return Extension(router=router, links=(
        {"rel": "alternate", "type": "text/html", "title": "Command wall (一屏观全城)", "href": "/map/"},
    ))
