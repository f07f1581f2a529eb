"""The manifest on the loopback S3 endpoint: parts are single PUTs, resume by listing."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ergo_ray.errors import ConfigError
from ergo_ray.infer.manifest import Manifest, WorkUnit, part_metadata
from ergo_ray.io import storage
from ergo_ray.io.schemas import posterior_schema

pytestmark = pytest.mark.s3


def _table(unit, ids):
    schema = posterior_schema()
    cols = {f.name: [None] * len(ids) for f in schema}
    cols["object_id"] = ids
    cols["status"] = ["ok"] * len(ids)
    return pa.table(cols, schema=schema.with_metadata(part_metadata({}, unit, len(ids), 0)))


def test_manifest_on_s3(bucket, storage_cfg):
    out = f"s3://{bucket}/cat"
    units = [WorkUnit.make("prepared", f"s{i}", {"url": f"s3://{bucket}/in/{i}.parquet"})
             for i in range(3)]
    fp = {"model_id": "m", "seed": 1}
    m = Manifest(out, units, fp, storage_cfg)
    assert m.open() is False
    assert m.done_keys() == set()
    m.write_part(units[2], _table(units[2], ["x", "y"]))
    m2 = Manifest(out, units, fp, storage_cfg)
    assert m2.open() is True
    assert [u.key for u in m2.pending()] == [units[0].key, units[1].key]
    for u, ids in zip(units[:2], (["a"], ["b", "c"]), strict=True):
        m2.write_part(u, _table(u, ids))
    st = m2.stats()
    assert (st.rows, st.errors, st.duplicates) == (5, 0, 0)
    m2.finish(st)
    assert storage.exists(m2.layout.success, storage_cfg)
    with pytest.raises(ConfigError):
        Manifest(out, units, {"model_id": "other", "seed": 1}, storage_cfg).open()
