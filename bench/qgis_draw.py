"""QGIS 3.22 (Debian python3-qgis, offscreen) draws one OGC API Features collection over a view as
its "Add WFS / OGC API Features layer" dialog makes the layer by default (features overlapping the
view extent only, paging on). Runs under the system Python, for bench/bench_clients.py:
    /usr/bin/python3 bench/qgis_draw.py BASE_URL COLLECTION WEST,SOUTH,EAST,NORTH → one JSON line."""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,  # noqa: E402
                       QgsFeatureRequest, QgsMapRendererSequentialJob, QgsMapSettings, QgsProject, QgsRectangle, QgsVectorLayer)
from qgis.PyQt.QtCore import QSize  # noqa: E402


def draw(base: str, collection: str, view: list[float]) -> dict:
    started = time.monotonic()
    layer = QgsVectorLayer(f"pagingEnabled='true' restrictToRequestBBOX='1' typename='{collection}' url='{base}' "
                           "version='OGC_API_FEATURES'", collection, "OAPIF")
    web_mercator = QgsCoordinateReferenceSystem("EPSG:3857")
    to_map = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), web_mercator, QgsProject.instance())
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(web_mercator)
    settings.setExtent(to_map.transformBoundingBox(QgsRectangle(*view)))
    settings.setOutputSize(QSize(1024, 768))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    seconds = time.monotonic() - started
    to_layer = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), layer.crs(), QgsProject.instance())
    in_view = QgsFeatureRequest().setFilterRect(to_layer.transformBoundingBox(QgsRectangle(*view)))
    drawn = sum(1 for _ in layer.getFeatures(in_view))  # from QGIS's cache of what the draw downloaded
    return {"valid": layer.isValid(), "seconds": round(seconds, 2), "features": drawn,
            "errors": [e.message for e in job.errors()]}


if __name__ == "__main__":
    app = QgsApplication([], False)
    app.initQgis()
    print(json.dumps(draw(sys.argv[1], sys.argv[2], [float(v) for v in sys.argv[3].split(",")])))
    app.exitQgis()
