"""Errors that used to be swallowed: each is now a typed error naming its input.

Unreadable listings are real failures: a folder that is a symbolic-link loop on local
disk (``ELOOP``, whatever the user's privileges). A folder that does not exist stays a
deliberate, tested case of its own (nothing to list).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ergo_ray.cli.main import main
from ergo_ray.config.loader import load_config
from ergo_ray.errors import InputError, StorageError
from ergo_ray.infer.discovery import discover_units
from ergo_ray.infer.manifest import Manifest, WorkUnit
from ergo_ray.io.prepared import PreparedInput
from ergo_ray.train.cinn_stage import _effective_preprocess
from tests.integration.test_catalog import write_prepared_shards, write_random_bundle

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("bundle") / "model")
    write_random_bundle(url, load_config("ci", [], []))
    return url


@pytest.fixture
def prepared_on_s3(tmp_path, bucket, s3_endpoint):
    """A prepared folder (shards/ and errors/) at ``s3://BUCKET/prep``."""
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ergo_ray.preprocess.prepare import ERROR_SCHEMA

    local = tmp_path / "prep"
    write_prepared_shards(local, n_units=1, rows=2, size=24)
    (local / "errors").mkdir()
    pq.write_table(pa.Table.from_pylist([{"object_id": "hsc-x", "input_url": "a.fits",
                                          "reason": "not_fits", "message": "a.fits: no"}],
                                        schema=ERROR_SCHEMA),
                   local / "errors" / "part-00000.parquet")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.upload_file(str(f), bucket, f"prep/{f.relative_to(local)}")
    return f"s3://{bucket}/prep"


def test_missing_errors_folder_is_nothing_rejected(prepared_on_s3, storage_cfg):
    units, kind = discover_units(prepared_on_s3, storage_cfg)
    assert kind == "prepared"
    assert [u.kind for u in units] == ["prepared", "prepare-errors"]
    # a prepared folder without errors/ (prepare rejected nothing) is a deliberate case
    import boto3
    bucket = prepared_on_s3.split("/")[2]
    s3 = boto3.client("s3", endpoint_url=storage_cfg.endpoint_url, region_name="us-east-1")
    s3.delete_object(Bucket=bucket, Key="prep/errors/part-00000.parquet")
    units, _ = discover_units(prepared_on_s3, storage_cfg)
    assert [u.kind for u in units] == ["prepared"]


def test_unreadable_errors_listing_fails_the_catalogue(bundle, tmp_path, capsys):
    prep = tmp_path / "prep"
    write_prepared_shards(prep, n_units=1, rows=2, size=24)
    (prep / "errors").symlink_to("errors")  # exists, cannot be listed (ELOOP)
    out = tmp_path / "cat"
    rc = main(["catalog", "--preset", "ci", "--model", bundle, "--in", str(prep),
               "--out", str(out), "--samples", "8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and f"{prep}/errors: cannot list" in err[0]
    assert not (out / "_SUCCESS").exists()


def test_failing_done_keys_listing_is_an_error(tmp_path):
    units = [WorkUnit.make("prepared", "a", {"url": "a"}, identity="a")]
    out = tmp_path / "cat"
    manifest = Manifest(str(out), units, {"m": 1})
    assert manifest.done_keys() == set()  # no parts/ yet: nothing done
    out.mkdir()
    (out / "parts").symlink_to("parts")
    with pytest.raises(StorageError, match=rf"{out}/parts: cannot list"):
        manifest.done_keys()


def test_missing_parts_folder_on_s3_means_nothing_done(bucket, storage_cfg):
    units = [WorkUnit.make("prepared", "a", {"url": "a"}, identity="a")]
    assert Manifest(f"s3://{bucket}/cat", units, {"m": 1}, storage_cfg).done_keys() == set()


def test_training_inputs_with_different_preprocess_settings_are_refused():
    cfg = load_config("ci", [], [])
    pre = cfg.preprocess.model_dump(mode="json")
    a = PreparedInput("s3://b/prep/tng100", (), 24, (), dict(pre, stretch="log"))
    b = PreparedInput("s3://b/prep/tng50", (), 24, (), dict(pre, stretch="asinh"))
    c = PreparedInput("s3://b/prep/eagle", (), 24, (), None)  # records nothing: no vote
    with pytest.raises(InputError, match=r"prep/tng100 and s3://b/prep/tng50 .*stretch"):
        _effective_preprocess(cfg, [a, c, b], {}, 24)
    got = _effective_preprocess(cfg, [c, a, dict_input(a)], {}, 24)
    assert got.preprocess.stretch == "log" and got.preprocess.size == 24
    bad = PreparedInput("s3://b/prep/odd", (), 24, (), dict(pre, stretch="gamma"))
    with pytest.raises(InputError, match="prep/odd"):
        _effective_preprocess(cfg, [bad], {}, 24)


def dict_input(inp: PreparedInput) -> PreparedInput:
    return PreparedInput(inp.url + "-copy", (), inp.image_size, (), dict(inp.preprocess))


def test_missing_model_is_exit_2_naming_it(tmp_path, capsys):
    survey = tmp_path / "prep"
    write_prepared_shards(survey, n_units=1, rows=2, size=24)
    missing = Path(tmp_path / "no" / "such" / "model")
    rc = main(["catalog", "--preset", "ci", "--model", str(missing), "--in", str(survey),
               "--out", str(tmp_path / "cat")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and str(missing) in err[0] and "not a model bundle" in err[0]
