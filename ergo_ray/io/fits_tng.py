"""TNG HSC-realistic mocks: one FITS file per galaxy and camera (formats research §2.2–2.3).

A file is ``shalo_{snap:03d}-{subhalo}_v{proj}_HSC_GRI.fits`` (or ``_HSC_GRIZY``; ``.gz`` or
``.fz`` too), with HDUs ``SUBARU_HSC.{G,R,I}`` and ``SUBARU_HSC.{F} MASK``, ``... VARIANCE``,
``... PSF``, in AB nanomaggies. What the readers share with the HSC layout lives in
:mod:`ergo_ray.io.fits_common`.

Images are written as float64 nanomaggies so that the unit conversion (÷ 63.096 on write,
× 63.096 on read) round-trips float32 pixels bit-exactly; float32 files (as the TNG release
ships them) read the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ergo_ray.cosmology import kpc_per_arcsec
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
    "TngMockName",
    "parse_tng_mock_name",
    "read_tng_mock",
    "read_tng_mock_bytes",
    "tng_mock_bytes",
    "tng_mock_name",
    "write_tng_mock",
]

_TNG_NAME = re.compile(
    r"^shalo_(?P<snap>\d{3})-(?P<subhalo>\d+)_v(?P<proj>[0-9])_HSC_(?P<bands>GRIZY|GRI)"
    r"\.fits(?P<gz>\.gz|\.fz)?$"
)


# --------------------------------------------------------------------------- file names


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


# --------------------------------------------------------------------------- mock files


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
        write_mask_header(m.header)
        hdus.append(m)
        if cutout.variance is not None:
            var = cutout.variance[k].astype(np.float64) / UNITS_PER_NANOMAGGY**2
            hdus.append(afits.ImageHDU(var, name=f"{ext} VARIANCE"))
        p = _gaussian_psf(PSF_FWHM_ARCSEC[band]) if psf is None else psf[k]
        hdus.append(afits.ImageHDU(np.asarray(p, dtype=np.float32), name=f"{ext} PSF"))
    return hdus_to_bytes(afits.HDUList(hdus), compress)


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
    planes, info = read_hdus(data, source, _tng_planes)
    urls = [source] * 3
    images = [p[0] for p in planes]
    check_same_shapes(images, [f"{source}[{b}]" for b in RAW_BANDS], "image")
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
        img_hdu = find_hdu(hdul, ext, source)
        image = image_plane(img_hdu, np.float64, source, "image")  # type: ignore[arg-type]
        mask_hdu = find_hdu(hdul, f"{ext} MASK", source, required=False)
        var_hdu = find_hdu(hdul, f"{ext} VARIANCE", source, required=False)
        mask = None
        if mask_hdu is not None:
            mask = canonical_mask(
                mask_plane(mask_hdu, source), mask_hdu.header
            )
        var = (
            None
            if var_hdu is None
            else image_plane(var_hdu, np.float64, source, "variance")
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
