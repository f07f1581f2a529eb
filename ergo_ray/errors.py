"""The exception hierarchy of ergo_ray.

When to raise what
------------------
* ``ConfigError``: a configuration key, value or CLI option is wrong. Raised on the driver
  before any Ray work starts; the CLI turns it into exit status 2 with a one-line reason.
* ``InputError`` and its subclasses: a whole input (a file, a catalogue, a URL) cannot be
  used. ``CatalogSchemaError`` lists missing or mistyped columns; ``FitsFormatError`` names
  the file, the HDU and what was expected.
* ``BadObjectError``: one galaxy cannot be processed. Pure functions raise it; Ray UDFs catch
  it per row, write an error row with the reason, and carry on.
* ``StorageError``: a URL, bucket or permission problem.
* ``CheckpointError``: a checkpoint or model bundle is incompatible, tampered with or unreadable.

Every class pickles with its extra attributes (``__reduce__``) so that it reaches the Ray
driver with its type intact.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadObjectError",
    "CatalogSchemaError",
    "CheckpointError",
    "ConfigError",
    "ErgoRayError",
    "ErgoRayWarning",
    "FitsFormatError",
    "InputError",
    "StorageError",
]


class ErgoRayError(Exception):
    """Base class of every error raised by ergo_ray."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args)


class ConfigError(ErgoRayError, ValueError):
    """A configuration key, value or command-line option is invalid."""


class InputError(ErgoRayError, ValueError):
    """A whole input (file, catalogue, URL) is unusable.

    Parameters
    ----------
    message : str
        What is wrong, naming the input.
    source : str, optional
        The input's URL or path.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.source))


class CatalogSchemaError(InputError):
    """A catalogue misses required columns or has columns of the wrong type."""


class FitsFormatError(InputError):
    """A FITS file is truncated, not FITS, lacks an HDU, or has a wrong shape or header."""


class BadObjectError(ErgoRayError, ValueError):
    """One galaxy cannot be processed; the survey goes on without it.

    Parameters
    ----------
    message : str
        Why the object failed.
    object_id : str, optional
        The object's identifier.
    reason : str, optional
        A short machine-readable reason code (for example ``"no_source"``).
    """

    def __init__(
        self, message: str, object_id: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.object_id = object_id
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.object_id, self.reason))


class StorageError(ErgoRayError, OSError):
    """A storage URL cannot be reached, listed, read or written."""


class CheckpointError(ErgoRayError, RuntimeError):
    """A checkpoint or model bundle is missing, incompatible or fails its integrity check."""


class ErgoRayWarning(UserWarning):
    """Warnings issued by ergo_ray."""
