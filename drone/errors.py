"""Domain exceptions of drone change detection; the API maps them to 4xx answers with the reason."""

from gis.errors import CityOpsError, InvalidInput


class DroneError(InvalidInput):
    """Base class: the input pair cannot be processed, `str(err)` says why."""


class NotGeoreferencedError(DroneError):
    """A raster has no CRS or no geotransform, so it cannot be placed on the ground."""


class NoOverlapError(DroneError):
    """The two epochs do not cover a common area."""


class RegistrationError(DroneError):
    """The pair could not be co-registered reliably (too little texture, low correlation, ...)."""


class CancelledError(CityOpsError):
    """The caller set the cancel event; partial outputs were removed."""


class InvalidRasterError(DroneError):
    """A file is not a usable orthophoto: unreadable, truncated, wrong band count or implausible GSD."""
