"""Files the HTML pages of the OGC resources load: their stylesheet and the script drawing the
small feature map (with MapLibre from /map/vendor/). No page has an inline script or style, so
they work under a Content-Security-Policy that allows same-origin scripts and styles only."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.extension import Extension
from gis.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MEDIA_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


def pages_extension() -> Extension:
    router = APIRouter(include_in_schema=False)

    @router.get("/static/{name}")
    async def static_file(name: str):
        path = (STATIC_DIR / name).resolve()
        if path.parent != STATIC_DIR or not path.is_file():
            raise NotFound(f"no file /static/{name}")
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix), headers={"Cache-Control": "no-cache"})

    return Extension(router=router)
