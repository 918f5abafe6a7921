"""`cityops import` and `cityops export`: GIS files in and out of the catalogue's layers."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Optional

import typer

from api.cli.common import console, fail, run_guarded, table_progress
from gis.db import conninfo
from gis.settings import get_settings
from layers.export import FORMATS
from layers.export_jobs import export_here
from layers.importer import ImportOptions, ImportReport
from layers.importer.jobs import import_here
from layers.importer.mapping import parse_field_maps


def _print_report(report: ImportReport, show_rejects: int) -> None:
    written = ", ".join(f"{layer} +{n:,}" + (f" ~{report.updated[layer]:,}" if report.updated.get(layer) else "")
                        for layer, n in report.inserted.items()) or "nothing"
    console.print(f"{report.file}: read {report.read:,} rows, wrote {written}; skipped {report.skipped:,} (no rule), "
                  f"repaired {report.repaired:,}, rejected {report.rejected:,}" + (" [dry run: rolled back]" if report.dry_run else ""))
    for reject in report.rejects[:show_rejects]:
        console.print(f"  rejected row {reject['row']} ({reject['source_layer']}): {reject['reason']}", highlight=False)
    if report.rejected > show_rejects:
        console.print(f"  … {report.rejected - show_rejects:,} more (use --report FILE for all listed)")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def import_(
    path: Path = typer.Argument(..., help="Shapefile (.shp or .zip), GeoPackage, GeoJSON(Seq), FlatGeobuf, CSV, OSM PBF"),
    layer: Optional[str] = typer.Option(None, help="target layer id (see the catalogue); optional with a mapping that has rules"),
    crs: Optional[str] = typer.Option(None, help="source CRS when the file has none or is wrong: EPSG:…, gcj02, bd09"),
    map_: list[str] = typer.Option([], "--map", help="column=field, repeatable"),
    mode: str = typer.Option("append", help="append | replace | upsert"),
    key: Optional[str] = typer.Option(None, help="column identifying a feature, for --mode upsert"),
    mapping: Optional[str] = typer.Option(None, help="mapping YAML file, or a shipped one: osm, gb2260"),
    district: Optional[str] = typer.Option(None, help="6-digit county code for features outside the city's districts"),
    class_code: Optional[str] = typer.Option(None, "--class", help="GB/T 30428.2 class for every component row"),
    where: Optional[str] = typer.Option(None, help="GDAL attribute filter on the source, e.g. \"gb LIKE '156321%'\""),
    max_rejects: Optional[int] = typer.Option(None, help="import nothing if more rows than this are rejected"),
    dry_run: bool = typer.Option(False, help="check and report, then roll back"),
    report_file: Optional[Path] = typer.Option(None, "--report", help="write the full report as JSON"),
) -> None:
    """Import a GIS file into a layer, in one transaction (it lands whole or not at all)."""
    def action() -> None:
        if mode not in ("append", "replace", "upsert"):
            raise typer.BadParameter("--mode is append, replace or upsert")
        options = ImportOptions(layer=layer, crs=crs, field_map=parse_field_maps(map_), mode=mode, key=key, mapping=mapping,
                                district=district, class_code=class_code, where=where, max_rejects=max_rejects, dry_run=dry_run)
        # A job like an upload's, run here: if this process dies, a server's worker imports the file.
        with table_progress(f"Importing {path.name} …") as bar:
            job, report = import_here(conninfo(get_settings()), get_settings(), path.resolve(), options,
                                      f"cli:{getpass.getuser()}", bar)
        if job["state"] != "succeeded":
            fail(f"import job {job['id']} {job['state']}: {job['error']}")
        if report_file:
            report_file.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        _print_report(report, show_rejects=10)
    run_guarded(action)


def export(
    layer: str = typer.Option(..., help="layer id (see the catalogue)"),
    format_: str = typer.Option("gpkg", "--format", help=" | ".join(FORMATS)),
    bbox: Optional[str] = typer.Option(None, help="minlon,minlat,maxlon,maxlat (CGCS2000)"),
    crs: Optional[str] = typer.Option(None, help="output EPSG system, default EPSG:4490"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="file to write; default LAYER.EXT here"),
) -> None:
    """Export a layer to a file, streaming rows in batches, as a job run here (if this process dies, a
    server's worker writes the file again); the file appears whole when the last row is written."""
    def action() -> None:
        target = output or Path(f"{layer}{FORMATS[format_].extension if format_ in FORMATS else ''}")
        with table_progress(f"Exporting {layer} as {format_} …") as bar:
            job = export_here(conninfo(get_settings()), get_settings(), layer, format_, bbox=bbox, crs=crs, output=target,
                              created_by=f"cli:{getpass.getuser()}", tell=lambda done, total: bar(layer, done, total))
        if job["state"] != "succeeded":
            fail(f"export job {job['id']} {job['state']}: {job['error']}")
        console.print(f"wrote {job['result']['features']:,} features to {target}")
    run_guarded(action)
