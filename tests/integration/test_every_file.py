"""Every file under a survey folder is accounted for, by ``prepare`` and raw-input ``catalog``.

An HSC-layout folder as archives hand it over: one galaxy tile-compressed
(``.fits.fz``, RICE ``CompImageHDU`` extensions named ``IMAGE``/``MASK``/``VARIANCE``),
one gzip-compressed, one plain, one whose g band is an HTML page under a FITS name, plus
files no reader knows (notes, an HTML page called ``.fits``, a bzip2-compressed cutout).
Both stages give exactly one row per galaxy and one error row per unknown file.
"""

from __future__ import annotations

import bz2
import gzip
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from ergo_ray.cli.main import main
from ergo_ray.config.loader import load_config
from tests.integration.test_catalog import SAMPLES, read_parts, write_random_bundle

pytestmark = pytest.mark.ray

HTML = b"<!DOCTYPE html><html><body>Service unavailable, try again</body></html>\n"


def _tile_compress(path):
    """Rewrite a band file as ``.fits.fz``: PRIMARY + RICE-compressed image HDUs."""
    with fits.open(path) as hdul:
        hdus = [fits.PrimaryHDU(header=hdul[0].header)]
        for hdu in hdul[1:]:
            hdus.append(fits.CompImageHDU(hdu.data, header=hdu.header, name=hdu.name,
                                          compression_type="RICE_1"))
        buf = io.BytesIO()
        fits.HDUList(hdus).writeto(buf)
    fz = path.with_name(path.name + ".fz")
    fz.write_bytes(buf.getvalue())
    path.unlink()
    with fits.open(fz) as check:  # what an archive's fpack'ed cutout looks like
        assert isinstance(check["IMAGE"], fits.CompImageHDU)
    return fz


@pytest.fixture(scope="module")
def survey(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("every-file") / "hsc"
    assert main(["mock", "--preset", "ci", "--domain", "hsc", "--n", "4", "--projections",
                 "1", "--seed", "5", "--format", "hsc-fits", "--out", str(root)]) == 0
    cutouts = root / "cutouts"
    by_line: dict[int, list] = {}
    for f in sorted(cutouts.glob("*.fits")):
        by_line.setdefault(int(f.name.split("-")[0]), []).append(f)
    fz_line, gz_line, plain_line, html_line = sorted(by_line)
    for f in by_line[fz_line]:
        _tile_compress(f)
    for f in by_line[gz_line]:
        f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    g = next(f for f in by_line[html_line] if "-HSC-G-" in f.name)
    g.write_bytes(HTML)
    # files no reader knows, one of them a cutout compressed in a way none reads
    (cutouts / "notes.txt").write_text("downloaded 2026-12-01 from the cutout service\n")
    (cutouts / "cutout.fits").write_bytes(HTML)
    r = next(f for f in by_line[plain_line] if "-HSC-R-" in f.name)
    (cutouts / (r.name + ".bz2")).write_bytes(bz2.compress(r.read_bytes()))
    return {"root": root, "lines": {"fz": fz_line, "gz": gz_line, "plain": plain_line,
                                    "html": html_line},
            "unknown": {"notes.txt": "unrecognised_file",
                        "cutout.fits": "unrecognised_file",
                        r.name + ".bz2": "unsupported_compression"}}


def _object_ids(root) -> dict[int, str]:
    cat = pq.read_table(root / "catalog").to_pydict()
    return dict(zip(cat["cutout_lineno"], cat["object_id"], strict=True))


def test_prepare_accounts_for_every_file(survey, tmp_path):
    out = tmp_path / "prep"
    assert main(["prepare", "--preset", "ci", "--in", str(survey["root"]), "--out",
                 str(out)]) == 0
    ids = _object_ids(survey["root"])
    ok = pq.read_table(out / "shards").column("object_id").to_pylist()
    errors = pa.concat_tables(pq.read_table(f) for f in sorted((out / "errors").glob("*.parquet")))
    err = errors.to_pylist()
    lines = survey["lines"]
    assert sorted(ok) == sorted(ids[lines[k]] for k in ("fz", "gz", "plain"))
    galaxy_errors = [e for e in err if e["object_id"] is not None]
    assert [(e["object_id"], e["reason"]) for e in galaxy_errors] == [
        (ids[lines["html"]], "not_fits")]
    unknown = {e["input_url"].rsplit("/", 1)[1]: e["reason"] for e in err
               if e["object_id"] is None}
    assert unknown == survey["unknown"]
    assert len(ok) + len(err) == len(ids) + len(survey["unknown"])


def test_raw_input_catalog_accounts_for_every_file(survey, tmp_path):
    bundle = str(tmp_path / "model")
    write_random_bundle(bundle, load_config("ci", [], []))
    out = tmp_path / "cat"
    assert main(["catalog", "--preset", "ci", "--model", bundle, "--in",
                 str(survey["root"]), "--out", str(out), "--samples", str(SAMPLES),
                 "--batch-size", "4"]) == 0
    t = read_parts(str(out)).to_pandas()
    ids = _object_ids(survey["root"])
    lines = survey["lines"]
    assert t["object_id"].is_unique
    assert len(t) == len(ids) + len(survey["unknown"])
    status = dict(zip(t["object_id"], t["status"], strict=True))
    for k in ("fz", "gz", "plain"):
        assert status[ids[lines[k]]] == "ok", k
    assert status[ids[lines["html"]]] == "error"
    others = t[~t["object_id"].isin(list(ids.values()))]
    assert (others["status"] == "error").all()
    for name, reason in survey["unknown"].items():
        hit = others["error"].str.contains(name, regex=False) & others["error"].str.contains(
            reason, regex=False)
        assert hit.sum() == 1, (name, reason, others["error"].tolist())
    assert np.isfinite(t.loc[t["status"] == "ok", "exsitu_frac_median"]).all()
