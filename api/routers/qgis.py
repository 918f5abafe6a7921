"""The deployment's QGIS project at a stable URL, /qgis/project.qgs: every layer of the live
catalogue as OGC API Features, the city as a styled vector-tile layer, orthophotos as XYZ layers.
It is written by QGIS itself (layers/qgis_project.py under the system Python with PyQGIS) and kept
until the catalogue, the orthophotos or the server's base URL change."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, Response

from api.deps import Connection
from api.extension import Extension
from gis.errors import ServiceUnavailable
from gis.orthophotos import public_listing
from gis.settings import PROJECT_ROOT
from tiles.matrix_sets import get_tms
from tiles.metadata import WORLD, city_bounds, style

QGIS_PYTHON = "/usr/bin/python3"  # Debian's python3-qgis installs PyQGIS for the system Python only
WRITER = PROJECT_ROOT / "layers" / "qgis_project.py"
MEDIA_TYPE = "application/x-qgis-project"
WRITE_TIMEOUT_S = 120
ORTHOPHOTO_TILES = "/orthophotos/{id}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"


async def _write_project(spec: dict) -> bytes:
    with tempfile.TemporaryDirectory(prefix="cityops-qgis-") as folder:
        spec_path, out_path = Path(folder, "spec.json"), Path(folder, "project.qgs")
        spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        try:
            process = await asyncio.create_subprocess_exec(
                QGIS_PYTHON, str(WRITER), str(spec_path), str(out_path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError:
            raise ServiceUnavailable(f"no {QGIS_PYTHON} to write the QGIS project with") from None
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), WRITE_TIMEOUT_S)
        except asyncio.TimeoutError:
            process.kill()
            raise ServiceUnavailable(f"QGIS did not write the project within {WRITE_TIMEOUT_S} s") from None
        if process.returncode != 0 or not out_path.exists():
            reason = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ServiceUnavailable(f"QGIS could not write the project (is python3-qgis installed?): {reason[0]}")
        return out_path.read_bytes()


def qgis_extension() -> Extension:
    router = APIRouter(tags=["Clients"])
    written: dict[str, bytes] = {}
    lock = asyncio.Lock()

    @router.get("/qgis/project.qgs", summary="QGIS project with every layer, styled", response_class=Response,
                responses={200: {"content": {MEDIA_TYPE: {}}}})
    async def project(request: Request, conn: Connection):
        base = str(request.base_url).rstrip("/")
        layers = request.app.state.catalogue.layers
        bounds = await city_bounds(conn) or WORLD
        photos = [{"name": f"{row['name']} ({row['kind']})", "tiles": base + ORTHOPHOTO_TILES.format(id=row["id"])}
                  for row in await public_listing(conn)]
        map_style = style(base, get_tms("WebMercatorQuad"), layers, bounds)
        source = map_style["sources"]["cityops"]
        spec = {"base": base, "title": "cityops — 城市运行管理服务平台", "style": map_style, "bounds": list(bounds),
                "tiles": source["tiles"][0], "zmax": source["maxzoom"], "orthophotos": photos,
                "layers": [{"id": layer.id, "title": layer.title} for layer in layers]}
        key = json.dumps(spec, sort_keys=True, ensure_ascii=False)
        async with lock:
            if key not in written:
                written.clear()
                written[key] = await _write_project(spec)
        return Response(written[key], media_type=MEDIA_TYPE,
                        headers={"Content-Disposition": 'attachment; filename="cityops.qgs"'})

    return Extension(router=router, links=(
        {"rel": "alternate", "type": MEDIA_TYPE, "title": "QGIS project of every layer", "href": "/qgis/project.qgs"},))
