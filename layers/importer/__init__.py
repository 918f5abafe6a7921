"""Importing GIS files into the catalogue's layers: read (GDAL), stage (COPY), check (SQL), write."""

from layers.importer.run import ImportOptions, ImportReport, import_file

__all__ = ["ImportOptions", "ImportReport", "import_file"]
