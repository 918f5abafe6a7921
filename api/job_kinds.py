"""Every kind of background job, for the server's worker pool (`api.services`) and `cityops jobs work`."""

from __future__ import annotations

from drone.jobs import DETECTION
from layers.export_jobs import EXPORT
from layers.importer.jobs import IMPORT
from tiles.jobs import TILE_ARCHIVE, TILE_SEED

JOB_KINDS = (IMPORT, DETECTION, EXPORT, TILE_ARCHIVE, TILE_SEED)
