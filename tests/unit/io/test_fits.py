from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits as afits

from ergo_ray.errors import BadObjectError, FitsFormatError, StorageError
from ergo_ray.io import fits_common, fits_hsc, fits_tng
from ergo_ray.io.cutout import Cutout
from ergo_ray.types import UNITS_PER_NANOMAGGY

from .helpers import BLOB_FLUX, blob_cutout


def _equal(a: Cutout, b: Cutout) -> None:
    assert a.image.dtype == np.float32 and a.image.shape == b.image.shape
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.variance, b.variance)


# ----------------------------------------------------------------------------- names


def test_hsc_name_builds_and_parses():
    name = fits_hsc.hsc_cutout_name(2, "i", 9813)
    assert name == "2-cutout-HSC-I-9813-pdr3_wide.fits"
    p = fits_hsc.parse_hsc_cutout_name(f"s3://bucket/run/cutouts/{name}.gz")
    assert (p.lineno, p.band, p.tract, p.rerun, p.kind, p.compressed) == (
        2,
        "i",
        9813,
        "pdr3_wide",
        "cutout",
        True,
    )
    bg = fits_hsc.parse_hsc_cutout_name("17-coadd+bg-HSC-G-10054-pdr2_dud.fits")
    assert (bg.lineno, bg.band, bg.kind, bg.rerun) == (17, "g", "coadd+bg", "pdr2_dud")
    assert bg.filename == "17-coadd+bg-HSC-G-10054-pdr2_dud.fits"
    assert (
        fits_hsc.parse_hsc_cutout_name("cutout-HSC-I-9813-pdr2_dud-210317-161628.fits") is None
    )
    assert fits_hsc.parse_hsc_cutout_name("2-cutout-HSC-I-9813-pdr3_wide.fit") is None


def test_tng_name_builds_and_parses():
    assert fits_tng.tng_mock_name(91, 123, 2) == "shalo_091-123_v2_HSC_GRI.fits"
    p = fits_tng.parse_tng_mock_name("/data/shalo_072-40_v3_HSC_GRIZY.fits")
    assert (p.snap, p.subhalo, p.projection, p.bands, p.compressed) == (
        72,
        40,
        3,
        "GRIZY",
        False,
    )
    assert fits_tng.parse_tng_mock_name("shalo_072-40_v3_HSC_GRI.fits.gz").compressed
    assert fits_tng.parse_tng_mock_name("shalo_72-40_v3_HSC_GRI.fits") is None
    assert fits_tng.parse_tng_mock_name("shalo_072-40_v3_photo.fits") is None


# ----------------------------------------------------------------------------- HSC


@pytest.mark.parametrize("compress", [False, True])
def test_hsc_round_trip_is_exact(tmp_path, compress):
    cut = blob_cutout(noise=0.05, seed=1)
    urls = fits_hsc.write_hsc_cutout(
        cut, str(tmp_path), lineno=5, tract=9813, ra=150.1, dec=2.2, compress=compress
    )
    suffix = ".fits.gz" if compress else ".fits"
    assert [u.rsplit("/", 1)[-1] for u in urls] == [
        f"5-cutout-HSC-{b}-9813-pdr3_wide{suffix}" for b in "GRI"
    ]
    back = fits_hsc.read_hsc_cutout({"g": urls[0], "r": urls[1], "i": urls[2]})
    _equal(back, cut)
    assert back.bad_pixels()[1, 5, 7] and back.bad_pixels()[2, -1, -1]
    assert not back.bad_pixels()[0, 0, 0]  # EDGE alone is not bad


def test_hsc_file_layout_follows_the_service(tmp_path):
    cut = blob_cutout()
    url = fits_hsc.write_hsc_cutout(cut, str(tmp_path), lineno=2, tract=1, ra=10.0, dec=-1.0)[
        2
    ]
    with afits.open(url) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
        assert hdul["IMAGE"].data.dtype == np.dtype(">f4")
        assert hdul["MASK"].header["MP_NO_DATA"] == 8
        assert hdul["MASK"].header["MP_DETECTED"] == 5
        assert hdul["IMAGE"].header["CTYPE1"] == "RA---TAN"
        assert hdul["IMAGE"].header["CD2_2"] == pytest.approx(0.168 / 3600)
        assert hdul[0].header["FILTER"] == "HSC-I"


def _band_file(path, hdus):
    afits.HDUList([afits.PrimaryHDU(), *hdus]).writeto(path)
    return str(path)


def test_mask_bits_come_from_the_header(tmp_path):
    # a file whose MASK numbers its planes differently from the canonical table
    img = np.ones((8, 8), np.float32)
    raw = np.zeros((8, 8), np.int32)
    raw[1, 1] = 1 << 3  # BAD in this file's numbering
    raw[2, 2] = 1 << 0  # DETECTED in this file's numbering
    raw[3, 3] = 1 << 12  # NO_DATA in this file's numbering
    mhdu = afits.ImageHDU(raw, name="MASK")
    for name, bit in (("BAD", 3), ("DETECTED", 0), ("NO_DATA", 12), ("SAT", 7)):
        mhdu.header[f"HIERARCH MP_{name}"] = bit
    urls = [
        _band_file(
            tmp_path / f"2-cutout-HSC-{b}-1-pdr3_wide.fits",
            [afits.ImageHDU(img, name="IMAGE"), mhdu.copy()],
        )
        for b in "GRI"
    ]
    cut = fits_hsc.read_hsc_cutout(urls)
    assert cut.mask[0, 1, 1] == 1 << fits_common.HSC_MASK_PLANES["BAD"]
    assert cut.mask[0, 2, 2] == 1 << fits_common.HSC_MASK_PLANES["DETECTED"]
    assert cut.mask[0, 3, 3] == 1 << fits_common.HSC_MASK_PLANES["NO_DATA"]
    bad = cut.bad_pixels()
    assert bad[:, 1, 1].all() and bad[:, 3, 3].all() and not bad[:, 2, 2].any()
    assert cut.variance is None  # no VARIANCE HDU in these files


def test_hdus_are_found_by_name_not_index(tmp_path):
    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    var = np.full((8, 8), 2.0, np.float32)
    hdus = [afits.ImageHDU(var, name="VARIANCE"), afits.ImageHDU(img, name="IMAGE")]
    urls = [
        _band_file(
            tmp_path / f"3-cutout-HSC-{b}-1-pdr3_wide.fits", [h.copy() for h in hdus]
        )
        for b in "GRI"
    ]
    cut = fits_hsc.read_hsc_cutout(urls)
    np.testing.assert_array_equal(cut.image[2], img)
    np.testing.assert_array_equal(cut.variance[0], var)
    assert cut.mask is None


# ----------------------------------------------------------------------------- TNG


@pytest.mark.parametrize("compress", [False, True])
def test_tng_round_trip_is_exact(tmp_path, compress):
    cut = blob_cutout(noise=0.05, seed=2)
    name = fits_tng.tng_mock_name(84, 17, 1) + (".gz" if compress else "")
    url = fits_tng.write_tng_mock(
        cut, str(tmp_path / name), redshift=0.1973, ra=30.5, dec=-4.25
    )
    back, info = fits_tng.read_tng_mock(url)
    _equal(back, cut)
    assert info["redshift"] == pytest.approx(0.1973)
    assert info["kpcarc"] == pytest.approx(
        3.37, abs=0.01
    )  # formats research §2.5, snap 84
    assert info["fovarc"] == pytest.approx(48 * 0.168)
    assert (info["ra"], info["dec"]) == (30.5, -4.25)
    assert info["apmag_i"] == pytest.approx(27 - 2.5 * np.log10(BLOB_FLUX[2]), abs=0.02)


def test_tng_file_is_in_nanomaggies_with_named_hdus(tmp_path):
    cut = blob_cutout()
    path = tmp_path / fits_tng.tng_mock_name(91, 1, 0)
    url = fits_tng.write_tng_mock(cut, str(path), redshift=0.1)
    with afits.open(url) as hdul:
        names = [h.name for h in hdul]
        for b in "GRI":
            ext = f"SUBARU_HSC.{b}"
            assert [ext, f"{ext} MASK", f"{ext} VARIANCE", f"{ext} PSF"] == names[
                names.index(ext) : names.index(ext) + 4
            ]
        nmgy = hdul["SUBARU_HSC.R"].data
        np.testing.assert_allclose(nmgy * UNITS_PER_NANOMAGGY, cut.image[1], rtol=1e-6)
        assert hdul["SUBARU_HSC.R"].header["BUNIT"].startswith("AB nanomaggies")
        np.testing.assert_allclose(hdul["SUBARU_HSC.G PSF"].data.sum(), 1.0, rtol=1e-5)
        for key in ("REDSHIFT", "FOVARC", "KPCARC", "APMAG"):
            assert key in hdul["SUBARU_HSC.I"].header


def test_tng_float32_release_files_read_and_grizy_extra_bands_ignored(tmp_path):
    # as the TNG release ships them: float32 nanomaggies, five bands
    nm = {b: np.full((10, 12), k + 1.0, np.float32) for k, b in enumerate("GRIZY")}
    hdus = [afits.PrimaryHDU()]
    for b in "GRIZY":
        img = afits.ImageHDU(nm[b], name=f"SUBARU_HSC.{b}")
        img.header["Redshift"] = 0.3
        hdus += [
            img,
            afits.ImageHDU(np.zeros((10, 12), np.int32), name=f"SUBARU_HSC.{b} MASK"),
        ]
    path = tmp_path / "shalo_078-9_v0_HSC_GRIZY.fits"
    afits.HDUList(hdus).writeto(path)
    cut, info = fits_tng.read_tng_mock(str(path))
    assert cut.image.shape == (3, 10, 12) and cut.variance is None
    np.testing.assert_allclose(
        cut.image[:, 0, 0], np.array([1, 2, 3]) * UNITS_PER_NANOMAGGY, rtol=1e-6
    )
    assert info["redshift"] == pytest.approx(0.3)
    assert np.isnan(info["kpcarc"])


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def hsc_files(tmp_path):
    return fits_hsc.write_hsc_cutout(blob_cutout(), str(tmp_path / "c"), lineno=2, tract=7)


def test_not_fits_names_the_file(tmp_path, hsc_files):
    (tmp_path / "c" / "x.txt").write_text("hello")
    bogus = str(tmp_path / "c" / "x.txt")
    with pytest.raises(FitsFormatError, match=r"x\.txt: not a FITS file") as err:
        fits_hsc.read_hsc_cutout([hsc_files[0], bogus, hsc_files[2]])
    assert err.value.source == bogus


def test_truncated_file(tmp_path, hsc_files):
    data = Path(hsc_files[1]).read_bytes()
    for cut_at in (len(data) - 100, len(data) - 2880):
        Path(hsc_files[1]).write_bytes(data[:cut_at])
        with pytest.raises(FitsFormatError, match=r"HSC-R.*(truncated|no HDU named)"):
            fits_hsc.read_hsc_cutout(hsc_files)


def test_truncated_gzip(tmp_path):
    url = fits_tng.write_tng_mock(
        blob_cutout(), str(tmp_path / "shalo_091-1_v0_HSC_GRI.fits.gz"), redshift=0.1
    )
    data = Path(url).read_bytes()
    Path(url).write_bytes(data[: len(data) // 2])
    with pytest.raises(FitsFormatError, match="truncated or corrupt gzip"):
        fits_tng.read_tng_mock(url)


def test_wrong_hdu_names(tmp_path):
    urls = [
        _band_file(
            tmp_path / f"2-cutout-HSC-{b}-1-pdr3_wide.fits",
            [afits.ImageHDU(np.ones((8, 8), np.float32), name="SCI")],
        )
        for b in "GRI"
    ]
    with pytest.raises(
        FitsFormatError, match=r"no HDU named 'IMAGE' \(found: PRIMARY, SCI\)"
    ):
        fits_hsc.read_hsc_cutout(urls)
    path = tmp_path / "shalo_091-1_v0_HSC_GRI.fits"
    afits.HDUList(
        [
            afits.PrimaryHDU(),
            afits.ImageHDU(np.ones((4, 4)), name="SUBARU_HSC.G"),
            afits.ImageHDU(np.ones((4, 4)), name="HSC.R"),
        ]
    ).writeto(path)
    with pytest.raises(FitsFormatError, match=r"no HDU named 'SUBARU_HSC\.R'"):
        fits_tng.read_tng_mock(str(path))


def test_all_nan_band_is_a_bad_object(tmp_path):
    cut = blob_cutout()
    cut.image[1] = np.nan
    urls = fits_hsc.write_hsc_cutout(cut, str(tmp_path), lineno=2, tract=1)
    with pytest.raises(BadObjectError, match="band r has no finite pixel") as err:
        fits_hsc.read_hsc_cutout(urls, object_id="obj-1")
    assert err.value.reason == "all_nan" and err.value.object_id == "obj-1"


def test_wrong_shapes(tmp_path):
    good = [
        fits_hsc.write_hsc_cutout(blob_cutout(size=16), str(tmp_path / "a"), lineno=2, tract=1)
    ]
    other = fits_hsc.write_hsc_cutout(
        blob_cutout(size=20), str(tmp_path / "b"), lineno=2, tract=1
    )
    with pytest.raises(
        FitsFormatError, match=r"image planes differ in shape.*\(20, 20\)"
    ):
        fits_hsc.read_hsc_cutout([good[0][0], other[1], good[0][2]])
    cube = _band_file(
        tmp_path / "cube.fits",
        [afits.ImageHDU(np.ones((2, 8, 8), np.float32), name="IMAGE")],
    )
    with pytest.raises(
        FitsFormatError, match=r"cube\.fits: HDU 'IMAGE' holds \(2, 8, 8\)"
    ):
        fits_hsc.read_hsc_cutout([cube, cube, cube])
    odd = _band_file(
        tmp_path / "odd.fits",
        [
            afits.ImageHDU(np.ones((8, 8), np.float32), name="IMAGE"),
            afits.ImageHDU(np.ones((8, 9), np.float32), name="VARIANCE"),
        ],
    )
    with pytest.raises(
        FitsFormatError, match=r"odd\.fits: HDU VARIANCE has shape \(8, 9\)"
    ):
        fits_hsc.read_hsc_cutout([odd, odd, odd])
    with pytest.raises(BadObjectError, match="expected \\(3, H, W\\)"):
        fits_common.validate_cutout(Cutout(np.ones((2, 8, 8), np.float32), source="x"))


def test_missing_band_file(tmp_path, hsc_files):
    with pytest.raises(FitsFormatError, match=r"obj-9: missing band file.*for i"):
        fits_hsc.read_hsc_cutout({"g": hsc_files[0], "r": hsc_files[1]}, object_id="obj-9")
    with pytest.raises(StorageError, match="no such file"):
        fits_hsc.read_hsc_cutout([hsc_files[0], hsc_files[1], str(tmp_path / "gone.fits")])


def test_gzip_bytes_are_deterministic():
    cut = blob_cutout()
    a = fits_tng.tng_mock_bytes(cut, redshift=0.2, compress=True)
    b = fits_tng.tng_mock_bytes(cut, redshift=0.2, compress=True)
    assert a == b and gzip.decompress(a)[:9] == b"SIMPLE  ="
    assert fits_common.fits_bytes_open(a, "mem").__len__() == 13
    with pytest.raises(
        FitsFormatError, match="mem: not a FITS file \\(an empty file\\)"
    ):
        fits_common.fits_bytes_open(b"", "mem")
    buf = io.BytesIO()
    afits.HDUList([afits.PrimaryHDU()]).writeto(buf)
    assert len(fits_common.fits_bytes_open(buf.getvalue(), "mem")) == 1
