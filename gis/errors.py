"""Domain exceptions. The API maps each kind to one HTTP status in one place; the CLI prints its message."""


class CityOpsError(Exception):
    """Base of every error a user can act on; the message is the reason shown to them."""


class NotFound(CityOpsError):
    pass


class InvalidInput(CityOpsError):
    pass


class Conflict(CityOpsError):
    pass


class PreconditionFailed(CityOpsError):
    """The client's If-Match ETag is stale: someone changed the resource since it was read."""


class PreconditionRequired(CityOpsError):
    """A write that could lose someone else's change came without If-Match."""


class Unauthorized(CityOpsError):
    pass


class Forbidden(CityOpsError):
    pass


class DatabaseUnavailable(CityOpsError):
    pass


class PrimaryUnavailable(DatabaseUnavailable):
    """The primary (the database every write goes to) does not answer."""


class ServiceUnavailable(CityOpsError):
    """A program the request needs (e.g. QGIS writing a project) is missing or failed; try later."""
