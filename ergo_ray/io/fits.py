"""FITS readers and writers for HSC-SSP service cutouts and TNG HSC-realistic mocks.

Two layouts (formats research §1.2–1.5, §2.2–2.3):

* **HSC-SSP cutouts**: one file per band, ``{lineno}-cutout-HSC-{G,R,I}-{tract}-{rerun}.fits``,
  holding PRIMARY + ``IMAGE`` / ``MASK`` / ``VARIANCE`` in HSC coadd units (AB zero point 27).
  The ``MASK`` plane's bit numbers come from its ``MP_*`` header keywords.
* **TNG mocks**: one file per galaxy and camera, ``shalo_{snap:03d}-{subhalo}_v{proj}_HSC_GRI.fits``
  (or ``_HSC_GRIZY``), with HDUs ``SUBARU_HSC.{G,R,I}`` and ``SUBARU_HSC.{F} MASK``,
  ``... VARIANCE``, ``... PSF``, in AB nanomaggies.

Every reader finds HDUs by ``EXTNAME`` (never by index), accepts gzip-compressed files
(``.fits.gz``) and tile-compressed ones (``.fits.fz``, RICE/GZIP ``CompImageHDU``s),
and returns a :class:`~ergo_ray.io.cutout.Cutout`: float32 (3, H, W), bands g, r, i, in
zero-point-27 units, with the mask re-mapped onto the canonical HSC bit numbers
(:data:`HSC_MASK_PLANES`) so that :meth:`Cutout.bad_pixels` works whatever the file used.

TNG images are written as float64 nanomaggies so that the unit conversion (÷ 63.096 on
write, × 63.096 on read) round-trips float32 pixels bit-exactly; float32 files (as the TNG
release ships them) read the same way.
"""

from __future__ import annotations

import gzip
import io
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ergo_ray.cosmology import kpc_per_arcsec
from ergo_ray.errors import BadObjectError, FitsFormatError
from ergo_ray.io import fitsscan, storage
from ergo_ray.io.cutout import Cutout
from ergo_ray.types import (
    PIXEL_SCALE_ARCSEC,
    PSF_FWHM_ARCSEC,
    RAW_BANDS,
    UNITS_PER_NANOMAGGY,
    ZERO_POINT,
)

if TYPE_CHECKING:
    from astropy.io import fits as afits

    from ergo_ray.config.schema import StorageConfig

__all__ = [
    "FITS_SUFFIXES",
    "HSC_MASK_PLANES",
    "HscCutoutName",
    "TngMockName",
    "fits_bytes_open",
    "hsc_band_bytes",
    "hsc_cutout_name",
    "parse_hsc_cutout_name",
    "parse_tng_mock_name",
    "read_hsc_band",
    "read_hsc_cutout",
    "read_tng_mock",
    "read_tng_mock_bytes",
    "tng_mock_bytes",
    "tng_mock_name",
    "validate_cutout",
    "write_hsc_cutout",
    "write_tng_mock",
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

_HSC_NAME = re.compile(
    r"^(?P<lineno>\d+)-(?P<kind>cutout|coadd\+bg)-HSC-(?P<band>[GRIZY])-(?P<tract>\d+)-"
    r"(?P<rerun>[A-Za-z0-9_]+)\.fits(?P<gz>\.gz|\.fz)?$"
)
_TNG_NAME = re.compile(
    r"^shalo_(?P<snap>\d{3})-(?P<subhalo>\d+)_v(?P<proj>[0-9])_HSC_(?P<bands>GRIZY|GRI)"
    r"\.fits(?P<gz>\.gz|\.fz)?$"
)
#: Name endings of the FITS files every reader accepts: plain, gzip, and tile-compressed
#: (``.fits.fz``: ``CompImageHDU`` extensions, found by ``EXTNAME`` like any other HDU).
FITS_SUFFIXES: tuple[str, ...] = (".fits", ".fits.gz", ".fits.fz")
_FITS_BLOCK = 2880
_GZIP_MAGIC = b"\x1f\x8b"
_T = TypeVar("_T")


# --------------------------------------------------------------------------- file names


@dataclass(frozen=True)
class HscCutoutName:
    """The parts of an HSC-SSP cutout-service file name.

    Attributes
    ----------
    lineno : int
        Line of the object in the uploaded coordinate list (the first object is 2).
    band : str
        ``"g"``, ``"r"``, ``"i"``, ``"z"`` or ``"y"``.
    tract : int
        Sky tract number.
    rerun : str
        Data release rerun, e.g. ``"pdr3_wide"``.
    kind : str
        ``"cutout"`` (coadd) or ``"coadd+bg"``.
    compressed : bool
        Whether the name ends in ``.gz``.
    tile_compressed : bool
        Whether the name ends in ``.fz`` (tile-compressed image HDUs).
    """

    lineno: int
    band: str
    tract: int
    rerun: str = "pdr3_wide"
    kind: str = "cutout"
    compressed: bool = False
    tile_compressed: bool = False

    @property
    def filename(self) -> str:
        """The file name this record describes."""
        name = hsc_cutout_name(
            self.lineno, self.band, self.tract, self.rerun, self.kind, self.compressed
        )
        return name + ".fz" if self.tile_compressed else name


def hsc_cutout_name(
    lineno: int,
    band: str,
    tract: int,
    rerun: str = "pdr3_wide",
    kind: str = "cutout",
    compressed: bool = False,
) -> str:
    """Return the cutout-service file name of one band of one object.

    Parameters
    ----------
    lineno : int
        Line number in the request list (header is line 1, so objects start at 2).
    band : str
        Band letter (``g``, ``r``, ``i``, ``z``, ``y``; either case).
    tract : int
        Tract number.
    rerun : str
        Rerun name.
    kind : {"cutout", "coadd+bg"}
        Image type as the service names it.
    compressed : bool
        Append ``.gz``.

    Returns
    -------
    str
        For example ``"2-cutout-HSC-I-9813-pdr3_wide.fits"``.
    """
    name = f"{int(lineno)}-{kind}-HSC-{band.upper()}-{int(tract)}-{rerun}.fits"
    return name + ".gz" if compressed else name


def parse_hsc_cutout_name(name: str) -> HscCutoutName | None:
    """Parse an HSC-SSP cutout file name (a bare name or a URL).

    Parameters
    ----------
    name : str
        File name or URL ending in the file name.

    Returns
    -------
    HscCutoutName or None
        The parsed parts, or None when the name does not follow the service's pattern.
    """
    m = _HSC_NAME.match(name.rsplit("/", 1)[-1])
    if not m:
        return None
    return HscCutoutName(
        lineno=int(m["lineno"]),
        band=m["band"].lower(),
        tract=int(m["tract"]),
        rerun=m["rerun"],
        kind=m["kind"],
        compressed=m["gz"] == ".gz",
        tile_compressed=m["gz"] == ".fz",
    )


@dataclass(frozen=True)
class TngMockName:
    """The parts of a TNG HSC-realistic mock file name.

    Attributes
    ----------
    snap : int
        Snapshot number.
    subhalo : int
        Subfind ID.
    projection : int
        Camera 0–3.
    bands : str
        ``"GRI"`` or ``"GRIZY"``.
    compressed : bool
        Whether the name ends in ``.gz``.
    tile_compressed : bool
        Whether the name ends in ``.fz`` (tile-compressed image HDUs).
    """

    snap: int
    subhalo: int
    projection: int
    bands: str = "GRI"
    compressed: bool = False
    tile_compressed: bool = False

    @property
    def filename(self) -> str:
        """The file name this record describes."""
        name = tng_mock_name(
            self.snap, self.subhalo, self.projection, self.bands, self.compressed
        )
        return name + ".fz" if self.tile_compressed else name


def tng_mock_name(
    snap: int,
    subhalo: int,
    projection: int,
    bands: str = "GRI",
    compressed: bool = False,
) -> str:
    """Return the file name of one TNG mock image.

    Parameters
    ----------
    snap, subhalo, projection : int
        Snapshot, Subfind ID and camera.
    bands : {"GRI", "GRIZY"}
        Band set in the name.
    compressed : bool
        Append ``.gz``.

    Returns
    -------
    str
        For example ``"shalo_091-123_v0_HSC_GRI.fits"``.
    """
    name = f"shalo_{int(snap):03d}-{int(subhalo)}_v{int(projection)}_HSC_{bands}.fits"
    return name + ".gz" if compressed else name


def parse_tng_mock_name(name: str) -> TngMockName | None:
    """Parse a TNG mock file name (a bare name or a URL).

    Parameters
    ----------
    name : str
        File name or URL.

    Returns
    -------
    TngMockName or None
        The parsed parts, or None when the name does not follow the pattern.
    """
    m = _TNG_NAME.match(name.rsplit("/", 1)[-1])
    if not m:
        return None
    return TngMockName(
        int(m["snap"]),
        int(m["subhalo"]),
        int(m["proj"]),
        m["bands"],
        m["gz"] == ".gz",
        m["gz"] == ".fz",
    )


# --------------------------------------------------------------------------- low level


def _to_bytes(hdul: afits.HDUList, compress: bool) -> bytes:
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


def _read_hdus(data: bytes, source: str, read: Callable[[Any, str], _T]) -> _T:
    """Apply ``read(hdus, source)`` to the file's HDUs, parsed fast where possible.

    Plain uncompressed image files are parsed by :func:`ergo_ray.io.fitsscan.scan`; any
    other file (tile-compressed, tables, odd headers) and any file ``read`` finds fault
    with is read again through astropy, so that what is accepted, the pixels and every
    error message are exactly astropy's.
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


def _find_hdu(
    hdul: afits.HDUList, name: str, source: str, required: bool = True
) -> afits.ImageHDU | None:
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


def _plane(hdu: afits.ImageHDU, dtype: Any, source: str, what: str) -> np.ndarray:
    data = hdu.data
    if data is None or np.ndim(data) != 2 or min(np.shape(data)) < 1:
        shape = None if data is None else tuple(np.shape(data))
        msg = f"{storage.redact(source)}: HDU {hdu.name!r} holds {shape}, expected a 2-D {what}"
        raise FitsFormatError(msg, source)
    return np.ascontiguousarray(data, dtype=dtype)


def _mask_plane(hdu: afits.ImageHDU, source: str) -> np.ndarray:
    """Return the mask plane in its own integer type (int64 if the file holds floats)."""
    data = _plane(hdu, None, source, "mask")
    return data if data.dtype.kind in "iu" else data.astype(np.int64)


def _canonical_mask(mask: np.ndarray, header: afits.Header) -> np.ndarray:
    """Re-map mask bits from the file's ``MP_*`` numbering onto :data:`HSC_MASK_PLANES`."""
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


def _mask_header(hdr: afits.Header) -> None:
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


def _same_shapes(planes: Sequence[np.ndarray], urls: Sequence[str], what: str) -> None:
    shapes = [p.shape for p in planes]
    if len(set(shapes)) > 1:
        desc = ", ".join(
            f"{storage.redact(u)}: {s}" for u, s in zip(urls, shapes, strict=True)
        )
        msg = f"{what} planes differ in shape ({desc})"
        raise FitsFormatError(msg, urls[0])


# --------------------------------------------------------------------------- HSC-SSP cutouts


def _tan_wcs(
    hdr: afits.Header, shape: tuple[int, int], ra: float | None, dec: float | None
) -> None:
    if ra is None or dec is None or not (math.isfinite(ra) and math.isfinite(dec)):
        return
    scale = PIXEL_SCALE_ARCSEC / 3600.0
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CRVAL1"], hdr["CRVAL2"] = float(ra), float(dec)
    hdr["CRPIX1"], hdr["CRPIX2"] = (shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0
    hdr["CD1_1"], hdr["CD1_2"], hdr["CD2_1"], hdr["CD2_2"] = -scale, 0.0, 0.0, scale
    hdr["RADESYS"] = "ICRS"


def hsc_band_bytes(
    image: np.ndarray,
    mask: np.ndarray | None,
    variance: np.ndarray | None,
    *,
    band: str,
    tract: int,
    ra: float | None = None,
    dec: float | None = None,
    rerun: str = "pdr3_wide",
    compress: bool = False,
) -> bytes:
    """Serialise one band of an HSC-SSP cutout: PRIMARY + IMAGE (+ MASK, VARIANCE).

    Parameters
    ----------
    image : numpy.ndarray
        float32 (H, W), zero-point-27 units.
    mask : numpy.ndarray or None
        int32 (H, W) mask in canonical HSC bits (``MP_*`` keywords are written).
    variance : numpy.ndarray or None
        float32 (H, W).
    band : str
        Band letter.
    tract : int
        Tract number (header ``TRACT``).
    ra, dec : float, optional
        Cutout centre; a TAN WCS at 0.168"/px is written when given.
    rerun : str
        Rerun name (header ``RERUN``).
    compress : bool
        Gzip the result.

    Returns
    -------
    bytes
        The FITS file.
    """
    from astropy.io import fits as afits

    prim = afits.PrimaryHDU()
    prim.header["FILTER"] = (f"HSC-{band.upper()}", "HSC filter")
    prim.header["TRACT"] = int(tract)
    prim.header["RERUN"] = rerun
    prim.header["FLUXMAG0"] = (
        10 ** (0.4 * ZERO_POINT),
        "flux of a 0-mag source (ZP 27)",
    )
    img = afits.ImageHDU(np.asarray(image, dtype=np.float32), name="IMAGE")
    img.header["EXTTYPE"] = "IMAGE"
    img.header["BUNIT"] = ("ZP27", "AB zero point 27: m = 27 - 2.5 log10(flux)")
    _tan_wcs(img.header, image.shape, ra, dec)
    hdus: list[Any] = [prim, img]
    if mask is not None:
        m = afits.ImageHDU(np.asarray(mask, dtype=np.int32), name="MASK")
        m.header["EXTTYPE"] = "MASK"
        _mask_header(m.header)
        hdus.append(m)
    if variance is not None:
        v = afits.ImageHDU(np.asarray(variance, dtype=np.float32), name="VARIANCE")
        v.header["EXTTYPE"] = "VARIANCE"
        hdus.append(v)
    return _to_bytes(afits.HDUList(hdus), compress)


def read_hsc_band(
    data: bytes, source: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read one HSC-SSP cutout band file.

    Parameters
    ----------
    data : bytes
        File content (plain or gzip).
    source : str
        URL, for messages.

    Returns
    -------
    tuple
        ``(image float32 (H, W), mask int32 (H, W) or None, variance float32 (H, W) or None)``,
        the mask in canonical bit numbers.

    Raises
    ------
    FitsFormatError
        If the file is not FITS, is truncated, lacks an ``IMAGE`` HDU or has a non-2-D or
        mismatched plane.
    """
    return _read_hdus(data, source, _hsc_band_planes)


def _hsc_band_planes(
    hdul: Any, source: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    image = _plane(_find_hdu(hdul, "IMAGE", source), np.float32, source, "image")
    mask_hdu = _find_hdu(hdul, "MASK", source, required=False)
    var_hdu = _find_hdu(hdul, "VARIANCE", source, required=False)
    mask = None
    if mask_hdu is not None:
        mask = _canonical_mask(
            _mask_plane(mask_hdu, source), mask_hdu.header
        )
    variance = (
        None if var_hdu is None else _plane(var_hdu, np.float32, source, "variance")
    )
    for name, arr in (("MASK", mask), ("VARIANCE", variance)):
        if arr is not None and arr.shape != image.shape:
            msg = (
                f"{storage.redact(source)}: HDU {name} has shape {arr.shape}, "
                f"IMAGE has {image.shape}"
            )
            raise FitsFormatError(msg, source)
    return image, mask, variance


def write_hsc_cutout(
    cutout: Cutout,
    folder_url: str,
    *,
    lineno: int,
    tract: int,
    storage_cfg: StorageConfig | None = None,
    ra: float | None = None,
    dec: float | None = None,
    rerun: str = "pdr3_wide",
    compress: bool = False,
) -> list[str]:
    """Write a cutout as three service-style band files under ``folder_url``.

    Parameters
    ----------
    cutout : Cutout
        The g, r, i cutout in zero-point-27 units.
    folder_url : str
        Folder URL (local path or ``s3://``).
    lineno : int
        The object's line number (first object: 2).
    tract : int
        Tract number.
    storage_cfg : StorageConfig, optional
        Storage settings.
    ra, dec : float, optional
        Centre for the WCS.
    rerun : str
        Rerun name in the file name.
    compress : bool
        Write ``.fits.gz``.

    Returns
    -------
    list of str
        The three file URLs, in g, r, i order.
    """
    urls = []
    for k, band in enumerate(RAW_BANDS):
        data = hsc_band_bytes(
            cutout.image[k],
            None if cutout.mask is None else cutout.mask[k],
            None if cutout.variance is None else cutout.variance[k],
            band=band,
            tract=tract,
            ra=ra,
            dec=dec,
            rerun=rerun,
            compress=compress,
        )
        url = storage.join(
            folder_url, hsc_cutout_name(lineno, band, tract, rerun, compressed=compress)
        )
        storage.write_bytes(url, data, storage_cfg)
        urls.append(url)
    return urls


def read_hsc_cutout(
    band_urls: Mapping[str, str] | Sequence[str],
    storage_cfg: StorageConfig | None = None,
    object_id: str | None = None,
    read: Callable[[str, StorageConfig | None], bytes] | None = None,
) -> Cutout:
    """Read the g, r, i band files of one HSC-SSP cutout into a :class:`Cutout`.

    Parameters
    ----------
    band_urls : mapping or sequence of str
        ``{"g": url, "r": url, "i": url}`` or three URLs in g, r, i order.
    storage_cfg : StorageConfig, optional
        Storage settings.
    object_id : str, optional
        Named in errors.
    read : callable, optional
        ``read(url, storage_cfg) -> bytes`` (default :func:`ergo_ray.io.storage.read_bytes`),
        e.g. a reader whose files were fetched concurrently.

    Returns
    -------
    Cutout
        float32 (3, H, W) in zero-point-27 units; ``mask``/``variance`` present when every
        band file has them.

    Raises
    ------
    FitsFormatError
        A band file is missing from ``band_urls`` or is malformed; band planes differ in shape.
    BadObjectError
        A band has no finite pixel.
    StorageError
        A file cannot be read.
    """
    if not isinstance(band_urls, Mapping):
        band_urls = dict(zip(RAW_BANDS, band_urls, strict=False))
    missing = [b for b in RAW_BANDS if not band_urls.get(b)]
    if missing:
        some = next(iter(band_urls.values()), "")
        who = object_id or storage.redact(some) or "object"
        msg = f"{who}: missing band file(s) for {', '.join(missing)}"
        raise FitsFormatError(msg, some or None)
    urls = [band_urls[b] for b in RAW_BANDS]
    fetch = storage.read_bytes if read is None else read
    planes = [read_hsc_band(fetch(u, storage_cfg), u) for u in urls]
    return _assemble(planes, urls, scale=1.0, object_id=object_id)


def _assemble(
    planes: Sequence[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]],
    urls: Sequence[str],
    *,
    scale: float,
    object_id: str | None,
) -> Cutout:
    images = [p[0] for p in planes]
    _same_shapes(images, urls, "image")
    image = np.stack(images)
    if scale != 1.0:
        image = (image.astype(np.float64) * scale).astype(np.float32)
    mask = None
    if all(p[1] is not None for p in planes):
        mask = np.stack([p[1] for p in planes]).astype(np.int32)  # type: ignore[misc]
    variance = None
    if all(p[2] is not None for p in planes):
        variance = np.stack([p[2] for p in planes])  # type: ignore[misc]
        if scale != 1.0:
            variance = (variance.astype(np.float64) * scale**2).astype(np.float32)
    source = urls[0] if len(set(urls)) == 1 else ",".join(urls)
    return validate_cutout(Cutout(image, mask, variance, source), object_id)


# --------------------------------------------------------------------------- TNG mocks


def _gaussian_psf(fwhm_arcsec: float, size: int = 25) -> np.ndarray:
    sigma = fwhm_arcsec / PIXEL_SCALE_ARCSEC / 2.3548
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    psf = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
    return (psf / psf.sum()).astype(np.float32)


def tng_mock_bytes(
    cutout: Cutout,
    *,
    redshift: float,
    ra: float | None = None,
    dec: float | None = None,
    psf: np.ndarray | None = None,
    header: Mapping[str, Any] | None = None,
    compress: bool = False,
) -> bytes:
    """Serialise a cutout in the TNG HSC-realistic mock layout (nanomaggies).

    Parameters
    ----------
    cutout : Cutout
        g, r, i cutout in zero-point-27 units.
    redshift : float
        Written as ``REDSHIFT``; also sets ``KPCARC`` (TNG cosmology).
    ra, dec : float, optional
        Sky position of the insertion site (``RA``, ``DEC``).
    psf : numpy.ndarray, optional
        (3, P, P) PSF images; a Gaussian of the mean HSC Wide FWHM per band by default.
    header : mapping, optional
        Extra header cards for every image HDU.
    compress : bool
        Gzip the result.

    Returns
    -------
    bytes
        The FITS file: PRIMARY, then per band ``SUBARU_HSC.F``, ``... MASK``,
        ``... VARIANCE``, ``... PSF``.
    """
    from astropy.io import fits as afits

    h, w = cutout.image.shape[1:]
    z = float(redshift)
    kpcarc = float(kpc_per_arcsec(z)) if math.isfinite(z) and z > 0 else math.nan
    hdus: list[Any] = [afits.PrimaryHDU()]
    for k, band in enumerate(RAW_BANDS):
        ext = f"SUBARU_HSC.{band.upper()}"
        # float64 nanomaggies: the conversion round-trips float32 pixels exactly.
        nmgy = cutout.image[k].astype(np.float64) / UNITS_PER_NANOMAGGY
        img = afits.ImageHDU(nmgy, name=ext)
        hdr = img.header
        hdr["BUNIT"] = "AB nanomaggies, m_AB = 22.5-2.5log10(f)"
        hdr["REDSHIFT"] = float(redshift)
        hdr["FOVARC"] = (w * PIXEL_SCALE_ARCSEC, "field of view [arcsec]")
        hdr["KPCARC"] = (kpcarc if math.isfinite(kpcarc) else "NaN", "kpc per arcsec")
        total = float(np.nansum(cutout.image[k], dtype=np.float64))
        hdr["APMAG"] = (
            ZERO_POINT - 2.5 * math.log10(total) if total > 0 else 99.0,
            "apparent AB magnitude of the stamp",
        )
        if ra is not None and dec is not None:
            hdr["RA"], hdr["DEC"] = float(ra), float(dec)
        hdr["RERUN"] = "pdr3_wide"
        for key, value in (header or {}).items():
            hdr[key] = value
        hdus.append(img)
        mask = np.zeros((h, w), np.int32) if cutout.mask is None else cutout.mask[k]
        m = afits.ImageHDU(np.asarray(mask, dtype=np.int32), name=f"{ext} MASK")
        _mask_header(m.header)
        hdus.append(m)
        if cutout.variance is not None:
            var = cutout.variance[k].astype(np.float64) / UNITS_PER_NANOMAGGY**2
            hdus.append(afits.ImageHDU(var, name=f"{ext} VARIANCE"))
        p = _gaussian_psf(PSF_FWHM_ARCSEC[band]) if psf is None else psf[k]
        hdus.append(afits.ImageHDU(np.asarray(p, dtype=np.float32), name=f"{ext} PSF"))
    return _to_bytes(afits.HDUList(hdus), compress)


def read_tng_mock_bytes(
    data: bytes, source: str, object_id: str | None = None
) -> tuple[Cutout, dict[str, float]]:
    """Read a TNG mock file's g, r, i planes and header values.

    Parameters
    ----------
    data : bytes
        File content (plain or gzip).
    source : str
        URL, for messages.
    object_id : str, optional
        Named in errors.

    Returns
    -------
    tuple of (Cutout, dict)
        The cutout in zero-point-27 units (nanomaggies × 63.096) and the header values
        ``redshift``, ``fovarc``, ``kpcarc``, ``ra``, ``dec``, ``apmag_g``, ``apmag_r``,
        ``apmag_i`` (NaN where absent).

    Raises
    ------
    FitsFormatError
        Not FITS, truncated, a missing ``SUBARU_HSC.{G,R,I}`` HDU or a bad plane.
    BadObjectError
        A band has no finite pixel.
    """
    planes, info = _read_hdus(data, source, _tng_planes)
    urls = [source] * 3
    images = [p[0] for p in planes]
    _same_shapes(images, [f"{source}[{b}]" for b in RAW_BANDS], "image")
    image = (np.stack(images) * UNITS_PER_NANOMAGGY).astype(np.float32)
    mask = None
    if all(p[1] is not None for p in planes):
        mask = np.stack([p[1] for p in planes]).astype(np.int32)  # type: ignore[misc]
    variance = None
    if all(p[2] is not None for p in planes):
        variance = (
            np.stack([p[2] for p in planes])  # type: ignore[misc]
            * UNITS_PER_NANOMAGGY**2
        ).astype(np.float32)
    cut = validate_cutout(Cutout(image, mask, variance, urls[0]), object_id)
    return cut, info


def _tng_planes(
    hdul: Any, source: str
) -> tuple[list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]], dict[str, float]]:
    planes = []
    info: dict[str, float] = {}
    for band in RAW_BANDS:
        ext = f"SUBARU_HSC.{band.upper()}"
        img_hdu = _find_hdu(hdul, ext, source)
        image = _plane(img_hdu, np.float64, source, "image")  # type: ignore[arg-type]
        mask_hdu = _find_hdu(hdul, f"{ext} MASK", source, required=False)
        var_hdu = _find_hdu(hdul, f"{ext} VARIANCE", source, required=False)
        mask = None
        if mask_hdu is not None:
            mask = _canonical_mask(
                _mask_plane(mask_hdu, source), mask_hdu.header
            )
        var = (
            None
            if var_hdu is None
            else _plane(var_hdu, np.float64, source, "variance")
        )
        for name, arr in (("MASK", mask), ("VARIANCE", var)):
            if arr is not None and arr.shape != image.shape:
                msg = (
                    f"{storage.redact(source)}: HDU '{ext} {name}' has shape "
                    f"{arr.shape}, '{ext}' has {image.shape}"
                )
                raise FitsFormatError(msg, source)
        planes.append((image, mask, var))
        hdr = img_hdu.header  # type: ignore[union-attr]
        info[f"apmag_{band}"] = _header_float(hdr, "APMAG")
        if band == RAW_BANDS[0]:
            for key in ("REDSHIFT", "FOVARC", "KPCARC", "RA", "DEC"):
                info[key.lower()] = _header_float(hdr, key)
    return planes, info


def _header_float(hdr: afits.Header, key: str) -> float:
    value = hdr.get(key)
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def write_tng_mock(
    cutout: Cutout,
    url: str,
    *,
    redshift: float,
    storage_cfg: StorageConfig | None = None,
    ra: float | None = None,
    dec: float | None = None,
    psf: np.ndarray | None = None,
    header: Mapping[str, Any] | None = None,
) -> str:
    """Write one TNG-layout mock file (gzip-compressed when ``url`` ends in ``.gz``).

    Parameters
    ----------
    cutout : Cutout
        g, r, i cutout in zero-point-27 units.
    url : str
        Destination file URL.
    redshift : float
        Header ``REDSHIFT``.
    storage_cfg : StorageConfig, optional
        Storage settings.
    ra, dec : float, optional
        Header ``RA``, ``DEC``.
    psf : numpy.ndarray, optional
        (3, P, P) PSF images.
    header : mapping, optional
        Extra header cards.

    Returns
    -------
    str
        ``url``.
    """
    data = tng_mock_bytes(
        cutout,
        redshift=redshift,
        ra=ra,
        dec=dec,
        psf=psf,
        header=header,
        compress=str(url).endswith(".gz"),
    )
    storage.write_bytes(url, data, storage_cfg)
    return url


def read_tng_mock(
    url: str,
    storage_cfg: StorageConfig | None = None,
    object_id: str | None = None,
    read: Callable[[str, StorageConfig | None], bytes] | None = None,
) -> tuple[Cutout, dict[str, float]]:
    """Read one TNG-layout mock file from a URL.

    Parameters
    ----------
    url : str
        File URL (``.fits`` or ``.fits.gz``).
    storage_cfg : StorageConfig, optional
        Storage settings.
    object_id : str, optional
        Named in errors.
    read : callable, optional
        ``read(url, storage_cfg) -> bytes`` (default :func:`ergo_ray.io.storage.read_bytes`).

    Returns
    -------
    tuple of (Cutout, dict)
        See :func:`read_tng_mock_bytes`.
    """
    fetch = storage.read_bytes if read is None else read
    return read_tng_mock_bytes(fetch(url, storage_cfg), url, object_id)
