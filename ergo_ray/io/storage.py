"""URLs to filesystems: local paths, ``file://`` and ``s3://``.

This is the only module that parses storage URLs. It hands out fsspec filesystems (for
whole-object reads and writes) and pyarrow filesystems (for Parquet and Ray Data), both
built from :class:`~ergo_ray.config.schema.StorageConfig` or the standard AWS environment
variables. Credentials are never logged or written: :func:`redact` strips them from URLs.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse

from ergo_ray.errors import StorageError

if TYPE_CHECKING:
    import fsspec
    import pyarrow.fs as pafs

    from ergo_ray.config.schema import StorageConfig

__all__ = [
    "Location",
    "arrow_fs",
    "exists",
    "join",
    "list_files",
    "locate",
    "open_read",
    "open_write",
    "read_bytes",
    "redact",
    "write_bytes",
]


@dataclass(frozen=True)
class Location:
    """A parsed storage URL.

    Attributes
    ----------
    scheme : str
        ``"file"`` or ``"s3"``.
    path : str
        Path without scheme: an absolute local path, or ``bucket/key`` for S3.
    url : str
        The canonical URL (``/abs/path`` or ``s3://bucket/key``).
    anon : bool
        True when the URL asked for anonymous access (``s3://anonymous@bucket``).
    """

    scheme: str
    path: str
    url: str
    anon: bool = False


def locate(url: str) -> Location:
    """Parse a URL or local path.

    Parameters
    ----------
    url : str
        ``/path``, ``relative/path``, ``file:///path`` or ``s3://[anonymous@]bucket/prefix``.

    Returns
    -------
    Location
        The parsed location.

    Raises
    ------
    StorageError
        For an unsupported scheme or an S3 URL without a bucket.
    """
    url = str(url)
    parsed = urlparse(url)
    if parsed.scheme in ("", "file") or re.match(r"^[A-Za-z]:[\\/]", url):
        path = parsed.path if parsed.scheme == "file" else url
        path = os.path.abspath(os.path.expanduser(path))
        return Location("file", path, path)
    if parsed.scheme in ("s3", "s3a"):
        anon = parsed.username == "anonymous"
        bucket = parsed.hostname or ""
        if not bucket:
            msg = f"{redact(url)}: an s3:// URL needs a bucket name"
            raise StorageError(msg)
        key = parsed.path.lstrip("/").rstrip("/")
        path = f"{bucket}/{key}" if key else bucket
        return Location("s3", path, f"s3://{path}", anon)
    msg = f"{redact(url)}: unsupported URL scheme {parsed.scheme!r}; use a path, file:// or s3://"
    raise StorageError(msg)


def redact(url: str) -> str:
    """Remove any user-info (credentials) from a URL before it is printed.

    Parameters
    ----------
    url : str
        URL or path.

    Returns
    -------
    str
        The URL without ``user:password@``.
    """
    return re.sub(r"^(\w+://)[^/@]*@", r"\1", str(url))


def join(url: str, *parts: str) -> str:
    """Join path components onto a URL.

    Parameters
    ----------
    url : str
        Base URL or path.
    *parts : str
        Components to append.

    Returns
    -------
    str
        The joined URL, in the same scheme.
    """
    loc = locate(url)
    pathmod = posixpath if loc.scheme == "s3" else os.path
    joined = pathmod.join(loc.path, *parts)
    return f"s3://{joined}" if loc.scheme == "s3" else joined


def _s3_options(storage: StorageConfig | None, anon: bool) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    endpoint = storage.endpoint_url if storage else None
    env = os.environ
    endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = (storage.region if storage else None) or os.environ.get("AWS_DEFAULT_REGION")
    opts["endpoint"] = endpoint
    opts["region"] = region
    opts["anon"] = anon or bool(storage and storage.anon)
    if storage and storage.key is not None and storage.secret is not None:
        opts["key"] = storage.key.get_secret_value()
        opts["secret"] = storage.secret.get_secret_value()
    return opts


def fsspec_fs(
    url: str, storage: StorageConfig | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return an fsspec filesystem and the scheme-less path for a URL.

    Parameters
    ----------
    url : str
        Local path or URL.
    storage : StorageConfig, optional
        Endpoint, region and credentials for S3.

    Returns
    -------
    tuple of (fsspec.AbstractFileSystem, str)
        The filesystem and the path to use with it.
    """
    loc = locate(url)
    if loc.scheme == "file":
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), loc.path
    import s3fs

    o = _s3_options(storage, loc.anon)
    kwargs: dict[str, Any] = {"anon": o["anon"], "use_listings_cache": False}
    if o["endpoint"]:
        kwargs["endpoint_url"] = o["endpoint"]
    if o["region"]:
        kwargs["client_kwargs"] = {"region_name": o["region"]}
    if "key" in o:
        kwargs["key"], kwargs["secret"] = o["key"], o["secret"]
    # One client per process and option set: a fresh S3FileSystem per call costs a new
    # botocore session (~1 s); the pid in the key keeps forked children off the parent's.
    cache_key = (os.getpid(), repr(sorted(kwargs.items())))
    fs = _S3FS_CACHE.get(cache_key)
    if fs is None:
        fs = _S3FS_CACHE[cache_key] = s3fs.S3FileSystem(skip_instance_cache=True, **kwargs)
    return fs, loc.path


_S3FS_CACHE: dict[tuple[int, str], Any] = {}


def arrow_fs(url: str, storage: StorageConfig | None = None) -> tuple[pafs.FileSystem, str]:
    """Return a pyarrow filesystem and the scheme-less path for a URL (for Parquet, Ray Data).

    Parameters
    ----------
    url : str
        Local path or URL.
    storage : StorageConfig, optional
        Endpoint, region and credentials for S3.

    Returns
    -------
    tuple of (pyarrow.fs.FileSystem, str)
        The filesystem and the path to use with it.
    """
    import pyarrow.fs as pafs

    loc = locate(url)
    if loc.scheme == "file":
        return pafs.LocalFileSystem(), loc.path
    o = _s3_options(storage, loc.anon)
    kw: dict[str, Any] = {
        "anonymous": o["anon"],
        "region": o["region"] or "us-east-1",
        "allow_bucket_creation": True,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=10),
    }
    if o["endpoint"]:
        ep = urlparse(o["endpoint"])
        kw["endpoint_override"] = ep.netloc or ep.path
        kw["scheme"] = ep.scheme or "https"
    if "key" in o:
        kw["access_key"], kw["secret_key"] = o["key"], o["secret"]
    return pafs.S3FileSystem(**kw), loc.path


def exists(url: str, storage: StorageConfig | None = None) -> bool:
    """Return whether a file or folder exists at ``url``."""
    fs, path = fsspec_fs(url, storage)
    try:
        return bool(fs.exists(path))
    except Exception as err:
        msg = f"{redact(url)}: cannot check existence: {err}"
        raise StorageError(msg) from err


def list_files(
    url: str,
    storage: StorageConfig | None = None,
    suffixes: tuple[str, ...] = (),
    *,
    missing_ok: bool = False,
) -> list[str]:
    """List files under a URL (recursively), sorted, as URLs of the same scheme.

    Parameters
    ----------
    url : str
        A folder URL, or a single file.
    storage : StorageConfig, optional
        Storage settings.
    suffixes : tuple of str
        Keep only names ending in one of these (for example ``(".fits", ".fits.gz")``).
    missing_ok : bool
        Return an empty list when nothing exists at the URL (a folder not yet written).
        A URL that exists but cannot be listed (permission, network) still raises.

    Returns
    -------
    list of str
        File URLs, sorted.

    Raises
    ------
    StorageError
        If the URL does not exist (unless ``missing_ok``) or cannot be listed.
    """
    loc = locate(url)
    fs, path = fsspec_fs(url, storage)
    try:
        try:
            # info, not isfile/isdir: those answer False to a permission error
            kind = fs.info(path).get("type")
        except FileNotFoundError:
            if missing_ok:
                return []
            msg = f"{redact(url)}: no such file or folder"
            raise StorageError(msg) from None
        found = [p for p in fs.find(path) if not p.endswith("/")] if kind == "directory" else [path]
    except StorageError:
        raise
    except Exception as err:
        msg = f"{redact(url)}: cannot list: {err}"
        raise StorageError(msg) from err
    names = sorted(
        p for p in found
        if (not suffixes or p.endswith(suffixes))
        and not posixpath.basename(p).startswith((".", "_"))
    )
    return [f"s3://{p}" if loc.scheme == "s3" else p for p in names]


def read_bytes(url: str, storage: StorageConfig | None = None) -> bytes:
    """Read a whole object.

    Raises
    ------
    StorageError
        If the object cannot be read.
    """
    loc = locate(url)
    # Local files: plain open; fsspec's local layer costs several times a small file's read.
    fs, path = (None, loc.path) if loc.scheme == "file" else fsspec_fs(url, storage)
    try:
        if fs is None:
            with open(path, "rb") as fh:
                return fh.read()
        with fs.open(path, "rb") as fh:
            return bytes(fh.read())
    except FileNotFoundError as err:
        msg = f"{redact(url)}: no such file"
        raise StorageError(msg) from err
    except Exception as err:
        msg = f"{redact(url)}: cannot read: {err}"
        raise StorageError(msg) from err


def write_bytes(url: str, data: bytes, storage: StorageConfig | None = None) -> None:
    """Write a whole object atomically (local: temp file + rename; S3: a single PUT).

    Raises
    ------
    StorageError
        If the object cannot be written.
    """
    with open_write(url, storage) as fh:
        fh.write(data)


@contextmanager
def open_read(url: str, storage: StorageConfig | None = None) -> Iterator[IO[bytes]]:
    """Open an object for binary reading."""
    fs, path = fsspec_fs(url, storage)
    try:
        fh = fs.open(path, "rb")
    except FileNotFoundError as err:
        msg = f"{redact(url)}: no such file"
        raise StorageError(msg) from err
    with fh:
        yield fh


@contextmanager
def open_write(url: str, storage: StorageConfig | None = None) -> Iterator[IO[bytes]]:
    """Open an object for binary writing; the object appears only when the block succeeds.

    Local files are written to a temporary name and renamed; S3 objects are uploaded in
    one PUT when the block exits, which S3 makes atomic.
    """
    loc = locate(url)
    fs, path = fsspec_fs(url, storage)
    if loc.scheme == "file":
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as fh:
                yield fh
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    import io

    buf = io.BytesIO()
    yield buf
    try:
        fs.pipe_file(path, buf.getvalue())
    except Exception as err:
        msg = f"{redact(url)}: cannot write: {err}"
        raise StorageError(msg) from err


def makedirs(url: str, storage: StorageConfig | None = None) -> None:
    """Create a local folder; a no-op for object storage, where prefixes need no creation."""
    loc = locate(url)
    if loc.scheme == "file":
        os.makedirs(loc.path, exist_ok=True)


def remove(url: str, storage: StorageConfig | None = None, recursive: bool = False) -> None:
    """Delete a file (or a folder with ``recursive=True``) if it exists."""
    fs, path = fsspec_fs(url, storage)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)
