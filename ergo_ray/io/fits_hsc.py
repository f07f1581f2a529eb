"""HSC-SSP cutout-service files: one FITS file per band (formats research §1.2–1.5).

A band file is ``{lineno}-cutout-HSC-{G,R,I}-{tract}-{rerun}.fits`` (``.gz`` or ``.fz`` too),
holding PRIMARY + ``IMAGE`` / ``MASK`` / ``VARIANCE`` in HSC coadd units (AB zero point 27).
The ``MASK`` plane's bit numbers come from its ``MP_*`` header keywords. What the readers
share with the TNG layout lives in :mod:`ergo_ray.io.fits_common`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ergo_ray.errors import FitsFormatError
from ergo_ray.io import storage
from ergo_ray.io.cutout import Cutout
from ergo_ray.io.fits_common import (
    canonical_mask,
    check_same_shapes,
    find_hdu,
    hdus_to_bytes,
    image_plane,
    mask_plane,
    read_hdus,
    validate_cutout,
    write_mask_header,
)
from ergo_ray.types import PIXEL_SCALE_ARCSEC, RAW_BANDS, ZERO_POINT

if TYPE_CHECKING:
    from astropy.io import fits as afits

    from ergo_ray.config.schema import StorageConfig

__all__ = [
    "HscCutoutName",
    "hsc_band_bytes",
    "hsc_cutout_name",
    "parse_hsc_cutout_name",
    "read_hsc_band",
    "read_hsc_cutout",
    "write_hsc_cutout",
]

_HSC_NAME = re.compile(
    r"^(?P<lineno>\d+)-(?P<kind>cutout|coadd\+bg)-HSC-(?P<band>[GRIZY])-(?P<tract>\d+)-"
    r"(?P<rerun>[A-Za-z0-9_]+)\.fits(?P<gz>\.gz|\.fz)?$"
)


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


# --------------------------------------------------------------------------- band files


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
        write_mask_header(m.header)
        hdus.append(m)
    if variance is not None:
        v = afits.ImageHDU(np.asarray(variance, dtype=np.float32), name="VARIANCE")
        v.header["EXTTYPE"] = "VARIANCE"
        hdus.append(v)
    return hdus_to_bytes(afits.HDUList(hdus), compress)


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
    return read_hdus(data, source, _hsc_band_planes)


def _hsc_band_planes(
    hdul: Any, source: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    image = image_plane(find_hdu(hdul, "IMAGE", source), np.float32, source, "image")
    mask_hdu = find_hdu(hdul, "MASK", source, required=False)
    var_hdu = find_hdu(hdul, "VARIANCE", source, required=False)
    mask = None
    if mask_hdu is not None:
        mask = canonical_mask(
            mask_plane(mask_hdu, source), mask_hdu.header
        )
    variance = (
        None if var_hdu is None else image_plane(var_hdu, np.float32, source, "variance")
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
    check_same_shapes(images, urls, "image")
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
