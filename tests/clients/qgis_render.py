"""QGIS 3.22 (Debian python3-qgis, offscreen) as a department analyst uses it, with default settings:
every collection as an OGC API Features layer, the city as a vector-tile layer from the style URL,
the served project file, and a render of the urban core. Runs under the system Python:
    /usr/bin/python3 tests/clients/qgis_render.py BASE_URL ARTIFACT_DIR → one JSON line on stdout."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,  # noqa: E402
                       QgsFeatureRequest, QgsMapRendererSequentialJob, QgsMapSettings, QgsProject, QgsRectangle, QgsVectorLayer,
                       QgsVectorTileLayer)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402

URBAN_CORE = (118.245, 33.94, 118.295, 33.98)  # lon/lat around the main town


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def render(layers: list, extent: QgsRectangle, path: Path) -> dict:
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    settings.setExtent(extent)
    settings.setOutputSize(QSize(1024, 768))
    settings.setBackgroundColor(QColor("#000000"))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    image.save(str(path))
    coloured = sum(1 for x in range(0, image.width(), 4) for y in range(0, image.height(), 4)
                   if QColor(image.pixel(x, y)).value() > 40)
    return {"errors": [e.message for e in job.errors()], "coloured_share": coloured / ((image.width() // 4) * (image.height() // 4))}


def check(base: str, artifacts: Path) -> dict:
    """Everything the test asserts on; its layers are gone when it returns (QGIS 3.22 crashes in
    exitQgis while Python still holds a layer)."""
    report: dict = {"collections": {}}

    # every collection, as QGIS's "Add WFS / OGC API Features layer" dialog makes it
    for collection in get_json(f"{base}/collections")["collections"]:
        if collection.get("dataType") == "map":  # imagery: raster tilesets, not OGC API Features
            continue
        layer = QgsVectorLayer(f"pagingEnabled='true' restrictToRequestBBOX='1' typename='{collection['id']}' "
                               f"url='{base}' version='OGC_API_FEATURES'", collection["id"], "OAPIF")
        report["collections"][collection["id"]] = {"valid": layer.isValid(), "count": layer.featureCount(),
                                                   "fields": layer.fields().count()}

    # one collection drawn over the urban core: QGIS pages through it with the server's page size
    started = time.monotonic()
    stalls = QgsVectorLayer(f"pagingEnabled='true' restrictToRequestBBOX='1' typename='stall_sites' url='{base}' "
                            "version='OGC_API_FEATURES'", "stall_sites", "OAPIF")
    drawn = sum(1 for _ in stalls.getFeatures())
    report["stall_sites_read_s"] = round(time.monotonic() - started, 2)
    report["stall_sites_read"] = drawn

    # the densest collection over the urban core, as the dialog's default (features in view) reads it:
    # more than a page, each next one continued by cursor
    started = time.monotonic()
    components = QgsVectorLayer(f"pagingEnabled='true' restrictToRequestBBOX='1' typename='components' url='{base}' "
                                "version='OGC_API_FEATURES'", "components", "OAPIF")
    to_layer = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), components.crs(), QgsProject.instance())
    in_core = QgsFeatureRequest().setFilterRect(to_layer.transformBoundingBox(QgsRectangle(*URBAN_CORE)))
    codes = [f["objcode"] for f in components.getFeatures(in_core)]
    report["components_core"] = {"features": len(codes), "distinct": len(set(codes))}
    report["components_core_s"] = round(time.monotonic() - started, 2)

    # the vector-tile layer from the style URL, as "Add Vector Tile layer" with a style URL makes it
    style = get_json(f"{base}/styles/default/style.json")
    source = style["sources"]["cityops"]
    tiles = QgsVectorTileLayer(f"styleUrl={base}/styles/default/style.json&type=xyz"
                               f"&url={quote(source['tiles'][0], safe=':/')}&zmax={source['maxzoom']}&zmin=0", "city")
    error, loaded = tiles.loadDefaultStyle()  # (error message, success)
    counts = [style for style in tiles.renderer().styles() if "-counts-" in style.styleName()]
    report["tiles"] = {
        "valid": tiles.isValid(), "style_loaded": loaded, "style_error": error, "styles": len(tiles.renderer().styles()),
        "count_styles": [{"name": s.styleName(), "filter": s.filterExpression(), "max_zoom": s.maxZoomLevel(),
                          "size": s.symbol().size(), "unit": int(s.symbol().sizeUnit())} for s in counts],
    }

    to_mercator = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"),
                                         QgsCoordinateReferenceSystem("EPSG:3857"), QgsProject.instance())
    core = to_mercator.transformBoundingBox(QgsRectangle(*URBAN_CORE))
    report["render_tiles"] = render([tiles], core, artifacts / "qgis_urban_core.png")

    # the served project: every layer valid, styled
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "cityops.qgs")
        urllib.request.urlretrieve(f"{base}/qgis/project.qgs", path)
        project = QgsProject.instance()
        report["project_read"] = project.read(str(path))
        layers = list(project.mapLayers().values())
        report["project_layers"] = {layer.name(): layer.isValid() for layer in layers}
        vector_tiles = [layer for layer in layers if isinstance(layer, QgsVectorTileLayer)]
        report["project_tile_styles"] = len(vector_tiles[0].renderer().styles()) if vector_tiles else 0
        report["render_project"] = render(vector_tiles, core, artifacts / "qgis_project_urban_core.png")
        project.clear()
    return report


def main() -> None:
    application = QgsApplication([], False)
    application.initQgis()
    report = check(sys.argv[1], Path(sys.argv[2]))
    print(json.dumps(report, ensure_ascii=False), flush=True)
    application.exitQgis()


if __name__ == "__main__":
    main()
