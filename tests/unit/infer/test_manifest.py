"""Exactly-once bookkeeping on plain Parquet parts (no Ray): keys, plan, resume, stats."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ergo_ray.errors import CheckpointError, ConfigError
from ergo_ray.infer.manifest import (
    META_ERRORS,
    META_UNIT,
    CatalogLayout,
    Manifest,
    WorkUnit,
    part_metadata,
    unit_key,
)
from ergo_ray.io.schemas import posterior_schema

FP = {"model_id": "m1", "n_samples": 10, "seed": 3, "keep_representation": False}


def _units(n=3):
    return [WorkUnit.make("prepared", f"/in/shards/part-{i}.parquet",
                          {"url": f"/in/shards/part-{i}.parquet"}) for i in range(n)]


def _rows(unit: WorkUnit, ids, errors=()):
    schema = posterior_schema()
    cols = {f.name: [None] * len(ids) for f in schema}
    cols["object_id"] = list(ids)
    cols["status"] = ["error" if i in errors else "ok" for i in ids]
    cols["n_samples"] = [10] * len(ids)
    meta = part_metadata({b"ergo_ray.model_id": b"m1"}, unit, len(ids), len(errors))
    return pa.table(cols, schema=schema.with_metadata(meta))


def test_unit_key_is_deterministic_and_distinct():
    a = unit_key("raw", {"files": ["a", "b"], "rows": [1, 2]})
    assert a == unit_key("raw", {"rows": [1, 2], "files": ["a", "b"]})
    assert a != unit_key("raw", {"files": ["a", "b"], "rows": [1, 3]})
    assert a != unit_key("prepared", {"files": ["a", "b"], "rows": [1, 2]})
    assert len(a) == 20 and int(a, 16) >= 0


def test_layout_paths_local_and_s3():
    lay = CatalogLayout("s3://bkt/cat")
    assert lay.part("0" * 20) == "s3://bkt/cat/parts/part-" + "0" * 20 + ".parquet"
    assert lay.success == "s3://bkt/cat/_SUCCESS"
    assert CatalogLayout("/x/y").actors == "/x/y/_meta/actors.json"


def test_resume_skips_written_parts_and_stats_count(tmp_path):
    out = str(tmp_path / "cat")
    units = _units(3)
    m = Manifest(out, units, FP)
    assert m.open() is False
    assert [u.key for u in m.pending()] == [u.key for u in units]
    m.write_part(units[1], _rows(units[1], ["a", "b"], errors={"b"}))
    # a stray temporary file of a killed run is neither a part nor kept
    tmp = os.path.join(out, "parts", f"part-{units[0].key}.parquet.tmp-dead")
    with open(tmp, "wb") as fh:
        fh.write(b"PAR1 half")
    again = Manifest(out, units, FP)
    assert again.open() is True
    assert [u.key for u in again.pending()] == [units[0].key, units[2].key]
    with pytest.raises(CheckpointError, match="2 input units have no catalogue part"):
        again.stats()
    again.write_part(units[0], _rows(units[0], ["c"]))
    again.write_part(units[2], _rows(units[2], []))
    # writing a unit twice replaces its part: still one file, same rows
    again.write_part(units[0], _rows(units[0], ["c"]))
    assert again.clean_temporary() == 1
    assert sorted(os.listdir(os.path.join(out, "parts"))) == sorted(
        f"part-{u.key}.parquet" for u in units)
    st = again.stats()
    assert (st.rows, st.errors, st.units, st.duplicates) == (3, 1, 3, 0)
    again.finish(st, {"model_id": "m1"})
    with open(os.path.join(out, "_SUCCESS")) as fh:
        body = json.load(fh)
    assert body["rows"] == 3 and body["errors"] == 1 and body["fingerprint"] == FP
    md = pq.read_schema(os.path.join(out, "parts", f"part-{units[1].key}.parquet")).metadata
    assert md[META_UNIT] == units[1].key.encode() and md[META_ERRORS] == b"1"
    assert pq.read_table(os.path.join(out, "parts")).num_rows == 3


def test_duplicates_across_units_are_counted(tmp_path):
    units = _units(2)
    m = Manifest(str(tmp_path), units, FP)
    m.open()
    m.write_part(units[0], _rows(units[0], ["a", "b"]))
    m.write_part(units[1], _rows(units[1], ["b"]))
    assert m.stats().duplicates == 1


@pytest.mark.parametrize("change", [{"seed": 4}, {"model_id": "m2"}])
def test_rerun_with_other_settings_is_refused(tmp_path, change):
    Manifest(str(tmp_path), _units(2), FP).open()
    with pytest.raises(ConfigError, match="holds a catalogue made with other settings"):
        Manifest(str(tmp_path), _units(2), {**FP, **change}).open()


def test_rerun_with_other_input_is_refused(tmp_path):
    Manifest(str(tmp_path), _units(2), FP).open()
    with pytest.raises(ConfigError, match="different input \\(2 units before, 3 now\\)"):
        Manifest(str(tmp_path), _units(3), FP).open()


def test_same_unit_twice_is_refused(tmp_path):
    u = _units(1)
    with pytest.raises(ConfigError, match="share a key"):
        Manifest(str(tmp_path), u + u, FP)


def test_unreadable_plan_is_a_checkpoint_error(tmp_path):
    m = Manifest(str(tmp_path), _units(1), FP)
    os.makedirs(tmp_path / "_meta")
    (tmp_path / "_meta" / "plan.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable catalogue plan"):
        m.open()
