"""The mock stage on the loopback S3 server: same output as on a local folder, no secrets."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from ergo_ray.cli.main import main
from ergo_ray.config.schema import StorageConfig
from ergo_ray.errors import BadObjectError
from ergo_ray.io import sources
from ergo_ray.io import storage as st
from ergo_ray.io.catalog import read_catalog

pytestmark = [pytest.mark.ray, pytest.mark.s3]

KEY, SECRET = "AKIAERGOTESTKEY0001", "ergo+test/secret+value+0001"


def _make_public(endpoint, bucket, prefix):
    """Mark every object public-read, as a public data release is (moto checks ACLs)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            client.put_object_acl(Bucket=bucket, Key=obj["Key"], ACL="public-read")


def _survey(url, storage):
    got = {}
    for row, cut in sources.iter_survey(url, storage):
        assert not isinstance(cut, BadObjectError), cut
        got[row["object_id"]] = cut
    return got


@pytest.mark.slow
def test_folder_and_s3_give_identical_catalogues_and_pixels(
        ray_session, tmp_path, bucket, s3_overrides, storage_cfg, caplog, capsys):
    args = ["mock", "--domain", "tng100", "--n", "200", "--projections", "1", "--seed", "1",
            "--preset", "ci", "--stamp-px", "32"]
    local = str(tmp_path / "mock")
    remote = f"s3://{bucket}/surveys/tng100"
    caplog.set_level(logging.DEBUG, logger="ergo_ray")
    assert main([*args, "--out", local]) == 0
    # credentials given in the configuration: used for the writes, never written or logged
    secrets = ["--set", f"storage.key={KEY}", "--set", f"storage.secret={SECRET}"]
    assert main([*args, "--out", remote, *s3_overrides, *secrets]) == 0

    a = read_catalog(local).sort_by("object_id").to_pandas()
    b = read_catalog(remote, storage_cfg).sort_by("object_id").to_pandas()
    assert len(a) == 200 and a["true_lmm_lookback_gyr"].isna().any()
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # NaN == NaN here
    pa_, pb = _survey(local, None), _survey(remote, storage_cfg)
    assert sorted(pa_) == sorted(pb) and len(pa_) == 200
    for oid, cut in pa_.items():
        np.testing.assert_array_equal(cut.image, pb[oid].image, err_msg=oid)
        np.testing.assert_array_equal(cut.mask, pb[oid].mask)
        np.testing.assert_array_equal(cut.variance, pb[oid].variance)

    meta = st.list_files(f"{remote}/_meta", storage_cfg)
    assert {u.rsplit("/", 1)[-1] for u in meta} >= {"config.yaml", "versions.json",
                                                     "mock.json"}
    written = b"".join(st.read_bytes(u, storage_cfg) for u in meta)
    output = caplog.text + "".join(capsys.readouterr())
    for secret in (KEY, SECRET):
        assert secret.encode() not in written
        assert secret not in output
    assert b"storage.key=***" in written
    assert "mock: wrote 200 objects" in caplog.text


def test_anonymous_read_of_a_public_bucket(ray_session, bucket, s3_overrides, s3_endpoint):
    url = f"s3://{bucket}/pub"
    assert main(["mock", "--domain", "eagle", "--n", "3", "--projections", "1", "--seed", "2",
                 "--format", "hsc-fits", "--preset", "ci", "--stamp-px", "32", "--out", url,
                 *s3_overrides]) == 0
    _make_public(s3_endpoint, bucket, "pub/")
    anon_cfg = StorageConfig(endpoint_url=s3_endpoint, region="us-east-1", anon=True)
    fs, _ = st.fsspec_fs(url, anon_cfg)
    assert fs.anon is True
    by_flag = _survey(url, anon_cfg)
    by_url = _survey(f"s3://anonymous@{bucket}/pub",
                     StorageConfig(endpoint_url=s3_endpoint, region="us-east-1"))
    assert sorted(by_flag) == sorted(by_url) == [f"eagle-2-{k:07d}-p0" for k in range(3)]
    for oid, cut in by_flag.items():
        np.testing.assert_array_equal(cut.image, by_url[oid].image)
