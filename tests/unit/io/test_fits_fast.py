"""The fast FITS path (``io.fitsscan``) gives astropy's pixels on every format."""

from __future__ import annotations

import gzip
import io
import threading
import time

import numpy as np
import pytest
from astropy.io import fits as afits

from ergo_ray.errors import BadObjectError, FitsFormatError, StorageError
from ergo_ray.io import fits_common, fits_hsc, fits_tng, fitsscan, prefetch, sources
from ergo_ray.io import storage as st


def _astropy_band(data: bytes, src: str = "mem") -> tuple:
    """Today's reader: every HDU through astropy."""
    with fits_common.fits_bytes_open(data, src) as hdul:
        return fits_hsc._hsc_band_planes(hdul, src)


def _assert_identical(got: tuple, want: tuple) -> None:
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None)
        if g is None:
            continue
        assert g.dtype == w.dtype and g.shape == w.shape
        # bit-identical, NaN payloads included
        assert g.tobytes() == w.tobytes()


def _band_bytes(
    image_hdu: afits.ImageHDU | afits.CompImageHDU, mask=None, var=None
) -> bytes:
    hdus = [afits.PrimaryHDU(), image_hdu]
    if mask is not None:
        hdus.append(mask)
    if var is not None:
        hdus.append(var)
    buf = io.BytesIO()
    afits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def _mask_hdu(mask: np.ndarray, hierarch: bool) -> afits.ImageHDU:
    hdu = afits.ImageHDU(mask, name="MASK")
    for name, bit in (("BAD", 0), ("EDGE", 6), ("DETECTED", 3), ("NO_DATA", 9)):
        key = f"MP_{name}"
        hdu.header[f"HIERARCH {key}" if hierarch or len(key) > 8 else key] = bit
    return hdu


@pytest.fixture
def planes():
    rng = np.random.default_rng(3)
    image = rng.normal(0, 5, (37, 41)).astype(np.float32)
    image[3, 4] = np.nan
    mask = rng.integers(0, 1 << 10, (37, 41)).astype(np.int32)
    var = rng.uniform(0.5, 2, (37, 41)).astype(np.float32)
    return image, mask, var


@pytest.mark.parametrize("compress", [False, True], ids=["fits", "fits.gz"])
@pytest.mark.parametrize("hierarch", [False, True])
def test_plain_and_gzip_files_read_fast_and_identical(planes, compress, hierarch):
    image, mask, var = planes
    data = _band_bytes(
        afits.ImageHDU(image, name="IMAGE"),
        _mask_hdu(mask, hierarch),
        afits.ImageHDU(var, name="VARIANCE"),
    )
    assert fitsscan.scan(data) is not None  # the fast path is the one taken
    if compress:
        data = gzip.compress(data)
    got = fits_hsc.read_hsc_band(data, "x.fits")
    _assert_identical(got, _astropy_band(data))
    # the bits were re-mapped from the file's MP_* numbering
    assert got[1][mask == (1 << 6)].max() == 1 << 4


def test_big_and_little_endian_arrays_read_identically(planes):
    image, mask, var = planes
    for order in (">", "<"):
        data = _band_bytes(
            afits.ImageHDU(image.astype(f"{order}f4"), name="IMAGE"),
            afits.ImageHDU(mask.astype(f"{order}i4"), name="MASK"),
            afits.ImageHDU(var.astype(f"{order}f8"), name="VARIANCE"),
        )
        got = fits_hsc.read_hsc_band(data, "x.fits")
        _assert_identical(got, _astropy_band(data))
        np.testing.assert_array_equal(got[0], image)


@pytest.mark.parametrize(
    ("dtype", "bscale", "bzero", "blank"),
    [
        (np.int16, 0.37, 12.5, None),
        (np.int16, 0.37, 12.5, -32768),
        (np.int16, 1, 0, -1),
        (np.uint8, 2.0, -3.0, None),
        (np.int32, 1e-3, 0.0, None),
        (np.uint16, 1, 32768, None),  # FITS unsigned convention
    ],
)
def test_scaled_integer_images_identical(dtype, bscale, bzero, blank):
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    raw = rng.integers(max(info.min, -30000), min(info.max, 30000), (20, 30)).astype(
        dtype
    )
    if blank is not None:
        raw[2, :5] = blank
    hdu = afits.ImageHDU(raw, name="IMAGE")
    if (bscale, bzero) != (1, 0) and dtype is not np.uint16:
        hdu.header["BSCALE"], hdu.header["BZERO"] = bscale, bzero
    if blank is not None:
        hdu.header["BLANK"] = blank
    data = _band_bytes(hdu)
    assert fitsscan.scan(data) is not None
    got = fits_hsc.read_hsc_band(data, "x.fits")
    _assert_identical(got, _astropy_band(data))
    if blank is not None:
        assert np.isnan(got[0][2, :5]).all()


def test_tile_compressed_file_is_read_by_astropy_identically(planes):
    image, mask, var = planes
    data = _band_bytes(
        afits.CompImageHDU(image, name="IMAGE", compression_type="RICE_1"),
        afits.CompImageHDU(mask, name="MASK", compression_type="RICE_1"),
        afits.CompImageHDU(var, name="VARIANCE", compression_type="GZIP_2"),
    )
    assert fitsscan.scan(data) is None  # compressed HDUs are astropy's
    got = fits_hsc.read_hsc_band(data, "x.fits.fz")
    _assert_identical(got, _astropy_band(data))
    np.testing.assert_array_equal(got[1], mask)


@pytest.mark.parametrize("compress", [False, True])
def test_whole_cutouts_identical_on_both_layouts(tmp_path, compress):
    from ergo_ray.mock import mock_object

    cut = mock_object("hsc", 5, 1, 0, 64)[1]
    urls = fits_hsc.write_hsc_cutout(
        cut, str(tmp_path / "h"), lineno=2, tract=1, compress=compress
    )
    got = fits_hsc.read_hsc_cutout(urls)
    ref = [_astropy_band(st.read_bytes(u), u) for u in urls]
    for k in range(3):
        _assert_identical((got.image[k], got.mask[k], got.variance[k]), ref[k])
    np.testing.assert_array_equal(got.image, cut.image)
    tng = str(tmp_path / ("shalo_091-1_v0_HSC_GRI.fits" + (".gz" if compress else "")))
    fits_tng.write_tng_mock(cut, tng, redshift=0.2, ra=1.0, dec=2.0)
    fast, info = fits_tng.read_tng_mock(tng)
    np.testing.assert_array_equal(fast.image, cut.image)
    with fits_common.fits_bytes_open(st.read_bytes(tng), tng) as hdul:
        ref_planes, ref_info = fits_tng._tng_planes(hdul, tng)
    hdus = fitsscan.scan(_payload(tng))
    assert hdus is not None
    fast_planes, fast_info = fits_tng._tng_planes(hdus, tng)
    for got_p, want_p in zip(fast_planes, ref_planes, strict=True):
        _assert_identical(got_p, want_p)
    assert fast_info == pytest.approx(ref_info, nan_ok=True)
    assert info == pytest.approx(ref_info, nan_ok=True)


def _payload(url: str) -> bytes:
    data = st.read_bytes(url)
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def test_header_values_parse_as_astropy_parses_them():
    hdr = afits.Header()
    hdr["S"] = "it''s"
    hdr["S2"] = ("a / b  ", "comment / with slash")
    hdr["B"], hdr["I"], hdr["X"] = True, -42, 1.5e-3
    hdr["HIERARCH MP_LONG_NAME"] = 7
    hdr["KPCARC"] = "NaN"
    buf = io.BytesIO()
    afits.HDUList([afits.PrimaryHDU(header=hdr)]).writeto(buf)
    (hdu,) = fitsscan.scan(buf.getvalue())
    ref = afits.open(io.BytesIO(buf.getvalue()))[0].header
    for key in ("S", "S2", "B", "I", "X", "MP_LONG_NAME", "KPCARC"):
        assert hdu.header[key] == ref[key] and type(hdu.header[key]) is type(ref[key])
    assert hdu.name == "PRIMARY" and hdu.data is None


def test_damaged_files_still_give_astropys_errors(planes):
    image, _, _ = planes
    data = _band_bytes(afits.ImageHDU(image, name="IMAGE"))
    assert fitsscan.scan(data[:-2880]) is None
    with pytest.raises(FitsFormatError, match=r"truncated|no HDU named"):
        fits_hsc.read_hsc_band(data[:-2880], "x.fits")


def test_prefetcher_reads_concurrently_in_order_and_reraises(tmp_path, monkeypatch):
    urls = []
    for i in range(12):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes([i]) * 10)
        urls.append(str(p))
    urls.insert(5, str(tmp_path / "missing"))
    live, peak, lock = [0], [0], threading.Lock()
    real = st.read_bytes

    def slow_read(url, storage=None):  # the real read, made slow like a remote GET
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.02)
        try:
            return real(url, storage)
        finally:
            with lock:
                live[0] -= 1

    monkeypatch.setattr(prefetch.st, "read_bytes", slow_read)
    with prefetch.Prefetcher(urls, threads=4, ahead=8) as pf:
        assert pf.read(urls[0]) == b"\x00" * 10
        assert pf.read(urls[3]) == b"\x03" * 10  # 1 and 2 skipped
        with pytest.raises(StorageError, match="no such file"):
            pf.read(urls[5])
        assert [pf.read(u) for u in urls[6:]] == [bytes([i]) * 10 for i in range(5, 12)]
    assert peak[0] > 1


@pytest.mark.s3
def test_read_unit_over_s3_matches_local(tmp_path, bucket, storage_cfg):
    from ergo_ray.mock import mock_object

    local = tmp_path / "cut"
    for i in range(3):
        fits_hsc.write_hsc_cutout(
            mock_object("hsc", 5, i, 0, 32)[1], str(local), lineno=i + 2, tract=1
        )
    remote = f"s3://{bucket}/cut"
    for p in sorted(local.iterdir()):
        st.write_bytes(f"{remote}/{p.name}", p.read_bytes(), storage_cfg)
    st.remove(f"{remote}/3-cutout-HSC-R-1-pdr3_wide.fits", storage_cfg)
    want = list(sources.iter_survey(str(local)))
    got = list(sources.iter_survey(remote, storage_cfg))
    assert len(got) == len(want) == 3
    for (rg, cg), (rw, cw) in zip(got, want, strict=True):
        assert rg["object_id"] == rw["object_id"]
        if rw["object_id"] == "hsc-line-3":
            assert isinstance(cg, BadObjectError) and cg.reason == "missing_band"
        else:
            np.testing.assert_array_equal(cg.image, cw.image)
            np.testing.assert_array_equal(cg.mask, cw.mask)
