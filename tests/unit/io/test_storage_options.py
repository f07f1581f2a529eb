"""Filesystem options for object storage: anonymous access, endpoints, no leaked secrets."""

from __future__ import annotations

from ergo_ray.config.schema import StorageConfig
from ergo_ray.io import storage as st


def test_anonymous_url_and_config_give_unsigned_filesystems():
    fs, path = st.fsspec_fs("s3://anonymous@pub-bucket/hsc/cutouts")
    assert path == "pub-bucket/hsc/cutouts" and fs.anon is True
    fs, _ = st.fsspec_fs(
        "s3://pub-bucket/x", StorageConfig(anon=True, region="eu-west-1")
    )
    assert fs.anon is True
    afs, apath = st.arrow_fs("s3://anonymous@pub-bucket/x")
    assert apath == "pub-bucket/x" and afs.region == "us-east-1"
    assert _arrow_options(afs)["anonymous"] is True
    afs, _ = st.arrow_fs("s3://pub-bucket/x", StorageConfig(anon=True))
    assert _arrow_options(afs)["anonymous"] is True
    assert _arrow_options(st.arrow_fs("s3://b/x")[0])["anonymous"] is False


def _arrow_options(afs):
    # pyarrow's S3FileSystem pickles its options as keyword arguments
    return afs.__reduce__()[1][0]


def test_endpoint_and_region_reach_both_filesystems():
    cfg = StorageConfig(endpoint_url="http://127.0.0.1:9", region="eu-west-1")
    fs, _ = st.fsspec_fs("s3://b/k", cfg)
    assert fs.client_kwargs["region_name"] == "eu-west-1"
    assert fs.endpoint_url == "http://127.0.0.1:9"
    assert fs.anon is False
    afs, _ = st.arrow_fs("s3://b/k", cfg)
    opts = _arrow_options(afs)
    assert afs.region == "eu-west-1"
    assert (opts["endpoint_override"], opts["scheme"]) == ("127.0.0.1:9", "http")


def test_credentials_stay_out_of_urls_and_config_dumps():
    from ergo_ray.config.loader import resolved_yaml
    from ergo_ray.config.schema import RunConfig

    assert st.redact("s3://AKIAXXXX:s3cr3t@bucket/p") == "s3://bucket/p"
    cfg = RunConfig(storage=StorageConfig(key="AKIAXXXX", secret="s3cr3t"))
    dump = resolved_yaml(cfg)
    assert "s3cr3t" not in dump and "AKIAXXXX" not in dump
    assert "s3cr3t" not in repr(cfg.storage)
