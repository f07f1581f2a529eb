"""What every FITS reader and writer of ergo_ray shares: opening, HDU lookup, masks, checks.

The two file layouts live in :mod:`ergo_ray.io.fits_hsc` (HSC-SSP cutout-service files) and
:mod:`ergo_ray.io.fits_tng` (TNG HSC-realistic mocks). Both find HDUs by ``EXTNAME`` (never by
index) through :func:`find_hdu`, accept gzip-compressed files (``.fits.gz``) and
tile-compressed ones (``.fits.fz``, RICE/GZIP ``CompImageHDU``s) through :func:`read_hdus`,
re-map mask bits onto the canonical HSC numbering (:data:`HSC_MASK_PLANES`) with
:func:`canonical_mask`, and end in :func:`validate_cutout`, so that a
:class:`~ergo_ray.io.cutout.Cutout` is float32 (3, H, W), bands g, r, i, in zero-point-27 units
and :meth:`Cutout.bad_pixels` works whatever the file used.
"""

from __future__ import annotations

import gzip
import io
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ergo_ray.errors import BadObjectError, FitsFormatError
from ergo_ray.io import fitsscan, storage
from ergo_ray.io.cutout import Cutout
from ergo_ray.types import RAW_BANDS

if TYPE_CHECKING:
    from astropy.io import fits as afits

__all__ = [
    "FITS_SUFFIXES",
    "HSC_MASK_PLANES",
    "canonical_mask",
    "check_same_shapes",
    "find_hdu",
    "fits_bytes_open",
    "hdus_to_bytes",
    "image_plane",
    "mask_plane",
    "read_hdus",
    "validate_cutout",
    "write_mask_header",
]

#: Canonical HSC PDR2/PDR3 coadd mask planes and their bit numbers (formats research §1.5).
HSC_MASK_PLANES: dict[str, int] = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "DETECTED": 5,
    "DETECTED_NEGATIVE": 6,
    "SUSPECT": 7,
    "NO_DATA": 8,
    "BRIGHT_OBJECT": 9,
    "CROSSTALK": 10,
    "NOT_DEBLENDED": 11,
    "UNMASKEDNAN": 12,
    "REJECTED": 13,
    "CLIPPED": 14,
    "SENSOR_EDGE": 15,
    "INEXACT_PSF": 16,
}
#: Name endings of the FITS files every reader accepts: plain, gzip, and tile-compressed
#: (``.fits.fz``: ``CompImageHDU`` extensions, found by ``EXTNAME`` like any other HDU).
FITS_SUFFIXES: tuple[str, ...] = (".fits", ".fits.gz", ".fits.fz")
_FITS_BLOCK = 2880
_GZIP_MAGIC = b"\x1f\x8b"
_T = TypeVar("_T")


def hdus_to_bytes(hdul: afits.HDUList, compress: bool) -> bytes:
    """Serialise HDUs to FITS bytes, gzip-compressed (reproducibly, ``mtime=0``) on request.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The HDUs to write.
    compress : bool
        Gzip the result.

    Returns
    -------
    bytes
        The file content.
    """
    buf = io.BytesIO()
    hdul.writeto(buf, output_verify="ignore")  # headers are ours; verify is slow
    data = buf.getvalue()
    return gzip.compress(data, compresslevel=6, mtime=0) if compress else data


def _fits_payload(data: bytes, source: str) -> bytes:
    """Return the FITS bytes of ``data`` (gunzipped), checked to be whole FITS blocks."""
    name = storage.redact(source)
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, gzip.BadGzipFile) as err:
            msg = f"{name}: truncated or corrupt gzip data ({err})"
            raise FitsFormatError(msg, source) from err
    if not data.startswith(b"SIMPLE  ="):
        what = "an empty file" if not data else "no SIMPLE card at the start"
        msg = f"{name}: not a FITS file ({what})"
        raise FitsFormatError(msg, source)
    if len(data) % _FITS_BLOCK:
        msg = (
            f"{name}: truncated FITS file ({len(data)} bytes is not a whole number of "
            f"{_FITS_BLOCK}-byte blocks)"
        )
        raise FitsFormatError(msg, source)
    return data


def fits_bytes_open(data: bytes, source: str) -> afits.HDUList:
    """Open FITS bytes (plain or gzip) after checking that they are whole FITS.

    Parameters
    ----------
    data : bytes
        File content.
    source : str
        URL for error messages.

    Returns
    -------
    astropy.io.fits.HDUList
        The HDUs, fully loaded into memory.

    Raises
    ------
    FitsFormatError
        If the bytes are not FITS, are truncated or cannot be parsed.
    """
    return _astropy_open(_fits_payload(data, source), source)


def _astropy_open(data: bytes, source: str) -> afits.HDUList:
    from astropy.io import fits as afits

    name = storage.redact(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = afits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False)
            for hdu in hdul:
                _ = hdu.data
        except Exception as err:
            msg = (
                f"{name}: truncated or corrupt FITS file ({type(err).__name__}: {err})"
            )
            raise FitsFormatError(msg, source) from err
    for w in caught:
        text = str(w.message)
        if "truncated" in text or "Error validating header" in text:
            hdul.close()
            msg = f"{name}: truncated or corrupt FITS file ({text.splitlines()[0]})"
            raise FitsFormatError(msg, source)
    return hdul


def read_hdus(data: bytes, source: str, read: Callable[[Any, str], _T]) -> _T:
    """Apply ``read(hdus, source)`` to the file's HDUs, parsed fast where possible.

    Plain uncompressed image files are parsed by :func:`ergo_ray.io.fitsscan.scan`; any
    other file (tile-compressed, tables, odd headers) and any file ``read`` finds fault
    with is read again through astropy, so that what is accepted, the pixels and every
    error message are exactly astropy's.

    Parameters
    ----------
    data : bytes
        File content (plain, gzip or tile-compressed).
    source : str
        URL, for messages.
    read : callable
        ``read(hdus, source)``; raises :class:`FitsFormatError` on a bad file.

    Returns
    -------
    object
        What ``read`` returns.

    Raises
    ------
    FitsFormatError
        If the bytes are not FITS, are truncated, or ``read`` rejects them.
    """
    payload = _fits_payload(data, source)
    hdus = fitsscan.scan(payload)
    if hdus is not None:
        try:
            return read(hdus, source)
        except FitsFormatError:
            pass  # astropy's reading below raises the error with its own wording
    with _astropy_open(payload, source) as hdul:
        return read(hdul, source)


def find_hdu(
    hdul: afits.HDUList, name: str, source: str, required: bool = True
) -> afits.ImageHDU | None:
    """Find an HDU by ``EXTNAME`` (or ``EXTTYPE``), case-insensitively; never by position.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList or list of scanned HDUs
        The file's HDUs.
    name : str
        The name wanted.
    source : str
        URL, for messages.
    required : bool
        Raise when it is absent (else return None).

    Returns
    -------
    HDU or None
        The first HDU of that name.

    Raises
    ------
    FitsFormatError
        If ``required`` and no HDU has the name (the message lists the names found).
    """
    want = name.upper()
    for hdu in hdul:
        ext = str(hdu.header.get("EXTNAME", hdu.name) or "").strip().upper()
        if ext == want or str(hdu.header.get("EXTTYPE", "")).strip().upper() == want:
            return hdu
    if not required:
        return None
    found = ", ".join(h.name or "?" for h in hdul)
    msg = f"{storage.redact(source)}: no HDU named {name!r} (found: {found})"
    raise FitsFormatError(msg, source)


def image_plane(hdu: afits.ImageHDU, dtype: Any, source: str, what: str) -> np.ndarray:
    """Return an HDU's 2-D data as a contiguous array of ``dtype``.

    Parameters
    ----------
    hdu : HDU
        An image HDU.
    dtype : numpy dtype or None
        Wanted type (None: the file's own).
    source : str
        URL, for messages.
    what : str
        What the plane is (``"image"``, ``"mask"``, ...), for messages.

    Returns
    -------
    numpy.ndarray
        (H, W) array.

    Raises
    ------
    FitsFormatError
        If the HDU holds no data or data that is not a non-empty 2-D array.
    """
    data = hdu.data
    if data is None or np.ndim(data) != 2 or min(np.shape(data)) < 1:
        shape = None if data is None else tuple(np.shape(data))
        msg = f"{storage.redact(source)}: HDU {hdu.name!r} holds {shape}, expected a 2-D {what}"
        raise FitsFormatError(msg, source)
    return np.ascontiguousarray(data, dtype=dtype)


def mask_plane(hdu: afits.ImageHDU, source: str) -> np.ndarray:
    """Return the mask plane in its own integer type (int64 if the file holds floats).

    Parameters
    ----------
    hdu : HDU
        The mask HDU.
    source : str
        URL, for messages.

    Returns
    -------
    numpy.ndarray
        (H, W) integer array.
    """
    data = image_plane(hdu, None, source, "mask")
    return data if data.dtype.kind in "iu" else data.astype(np.int64)


def canonical_mask(mask: np.ndarray, header: afits.Header) -> np.ndarray:
    """Re-map mask bits from the file's ``MP_*`` numbering onto :data:`HSC_MASK_PLANES`.

    Parameters
    ----------
    mask : numpy.ndarray
        Integer mask plane as stored.
    header : astropy.io.fits.Header
        The mask HDU's header (its ``MP_*`` keywords name the bits).

    Returns
    -------
    numpy.ndarray
        int32 mask in canonical bits; planes without a canonical bit are dropped.
    """
    values = {k: header[k] for k in list(header.keys()) if k.upper().startswith("MP_")}
    planes = {
        k[3:].upper(): int(v)
        for k, v in values.items()
        if isinstance(v, int | np.integer)
    }
    if not planes or all(HSC_MASK_PLANES.get(n) == b for n, b in planes.items()):
        return mask.astype(np.int32, copy=False)
    src = mask.astype(np.int64)
    out = np.zeros(mask.shape, dtype=np.int64)
    for name, bit in planes.items():
        target = HSC_MASK_PLANES.get(name)
        if target is None or not 0 <= bit < 63:
            continue  # a plane we have no canonical place for
        out |= ((src >> bit) & 1) << target
    return out.astype(np.int32)


def write_mask_header(hdr: afits.Header) -> None:
    """Write the ``MP_*`` keywords of :data:`HSC_MASK_PLANES` into a mask HDU's header.

    Parameters
    ----------
    hdr : astropy.io.fits.Header
        Header to extend in place.
    """
    for name, bit in HSC_MASK_PLANES.items():
        hdr[f"HIERARCH MP_{name}"] = bit


def validate_cutout(cutout: Cutout, object_id: str | None = None) -> Cutout:
    """Check a cutout's shapes and content.

    Parameters
    ----------
    cutout : Cutout
        The cutout to check.
    object_id : str, optional
        Named in the error.

    Returns
    -------
    Cutout
        The same cutout.

    Raises
    ------
    BadObjectError
        ``reason="bad_shape"`` when the image is not (3, H, W) or its mask/variance differ in
        shape; ``reason="all_nan"`` when a band has no finite pixel.
    """
    src = storage.redact(cutout.source) or "cutout"
    img = cutout.image
    if img.ndim != 3 or img.shape[0] != 3 or min(img.shape[1:]) < 1:
        msg = f"{src}: image has shape {img.shape}, expected (3, H, W)"
        raise BadObjectError(msg, object_id, "bad_shape")
    for plane, arr in (("mask", cutout.mask), ("variance", cutout.variance)):
        if arr is not None and arr.shape != img.shape:
            msg = f"{src}: {plane} has shape {arr.shape}, image has {img.shape}"
            raise BadObjectError(msg, object_id, "bad_shape")
    finite = np.isfinite(img).reshape(3, -1).any(axis=1)
    if not finite.all():
        bands = ", ".join(b for b, ok in zip(RAW_BANDS, finite, strict=True) if not ok)
        msg = f"{src}: band {bands} has no finite pixel (all NaN/inf)"
        raise BadObjectError(msg, object_id, "all_nan")
    return cutout


def check_same_shapes(planes: Sequence[np.ndarray], urls: Sequence[str], what: str) -> None:
    """Check that the band planes of one object have one shape.

    Parameters
    ----------
    planes : sequence of numpy.ndarray
        One plane per band.
    urls : sequence of str
        Where each plane came from, for the message.
    what : str
        What the planes are (``"image"``), for the message.

    Raises
    ------
    FitsFormatError
        If the shapes differ (the message lists each file's shape).
    """
    shapes = [p.shape for p in planes]
    if len(set(shapes)) > 1:
        desc = ", ".join(
            f"{storage.redact(u)}: {s}" for u, s in zip(urls, shapes, strict=True)
        )
        msg = f"{what} planes differ in shape ({desc})"
        raise FitsFormatError(msg, urls[0])
