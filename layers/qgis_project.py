"""Writes the deployment's QGIS project (.qgs) with QGIS's own API, so the file is exactly what QGIS
would save: every catalogue layer as OGC API Features, the whole city as one vector-tile layer
styled from /styles/default/style.json (converted by QGIS's own MapLibre converter, which QGIS
3.22 does not do on its own when it opens a project), and the orthophotos as XYZ layers.

Runs under the system Python that has PyQGIS (Debian `python3-qgis`), not the project's venv:
    /usr/bin/python3 layers/qgis_project.py SPEC.json OUT.qgs
where SPEC.json is {"base": URL, "title": …, "layers": [{id, title, geometry_type}], "style": {…},
"tiles": URL template, "zmax": n, "bounds": [w, s, e, n], "orthophotos": [{name, tiles}]}.
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import quote

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,  # noqa: E402
                       QgsMapBoxGlStyleConverter, QgsProject, QgsRasterLayer, QgsRectangle, QgsReferencedRectangle,
                       QgsSingleSymbolRenderer, QgsVectorLayer, QgsVectorTileLayer)

WEB_MERCATOR = "EPSG:3857"


def vector_tile_source(spec: dict) -> str:
    return (f"styleUrl={spec['base']}/styles/default/style.json&type=xyz"
            f"&url={quote(spec['tiles'], safe=':/')}&zmax={spec['zmax']}&zmin=0")


def feature_source(spec: dict, layer_id: str) -> str:
    return (f"pagingEnabled='true' restrictToRequestBBOX='1' preferCoordinatesForWfsT11='false' "
            f"typename='{layer_id}' url='{spec['base']}' version='OGC_API_FEATURES'")


def write(spec: dict, path: str) -> list[str]:
    """Builds and saves the project; returns the converter's warnings."""
    project = QgsProject.instance()
    project.clear()
    project.setTitle(spec["title"])
    project.setCrs(QgsCoordinateReferenceSystem(WEB_MERCATOR))

    converter = QgsMapBoxGlStyleConverter()
    converter.convert(spec["style"])
    renderer = converter.renderer()
    # clones taken while the styles they belong to are alive
    symbols = {style.layerName(): style.symbol().clone() for style in renderer.styles()
               if "-counts-" not in style.styleName() and style.symbol() is not None}
    tiles = QgsVectorTileLayer(vector_tile_source(spec), "城市底图 City (vector tiles)")
    tiles.setRenderer(renderer)

    root = project.layerTreeRoot()
    features_group = root.addGroup("OGC API Features")
    for entry in spec["layers"]:
        layer = QgsVectorLayer(feature_source(spec, entry["id"]), entry["title"], "OAPIF")
        if entry["id"] in symbols:
            layer.setRenderer(QgsSingleSymbolRenderer(symbols.pop(entry["id"])))
        project.addMapLayer(layer, False)
        features_group.addLayer(layer).setItemVisibilityChecked(False)

    for photo in spec.get("orthophotos", []):
        raster = QgsRasterLayer(f"type=xyz&url={quote(photo['tiles'], safe=':/')}&zmax=22&zmin=0", photo["name"], "wms")
        project.addMapLayer(raster)
    project.addMapLayer(tiles)

    west, south, east, north = spec["bounds"]
    to_mercator = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"),
                                         QgsCoordinateReferenceSystem(WEB_MERCATOR), project)
    extent = to_mercator.transformBoundingBox(QgsRectangle(west, south, east, north))
    project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(extent, project.crs()))
    if not project.write(path):
        raise SystemExit(f"could not write {path}")
    return list(converter.warnings())


def main() -> None:
    spec_path, out_path = sys.argv[1:3]
    with open(spec_path, encoding="utf-8") as spec_file:
        spec = json.load(spec_file)
    application = QgsApplication([], False)
    application.initQgis()
    try:
        for warning in write(spec, out_path):
            print(f"style converter: {warning}", file=sys.stderr)
    finally:
        QgsProject.instance().clear()
        application.exitQgis()


if __name__ == "__main__":
    main()
