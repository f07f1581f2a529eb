"""The driver-side collector: a unit's part is written once all its rows are in, once."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray.infer.collector import UnitCollector
from ergo_ray.infer.manifest import Manifest, WorkUnit
from ergo_ray.infer.predictors import output_schema
from ergo_ray.infer.progress import ProgressLog
from ergo_ray.io.schemas import posterior_schema, posterior_summary_columns


def _batch(unit: WorkUnit, seqs, total, status="ok", node="n1", actor="a1"):
    n = len(seqs)
    schema = output_schema(False)
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols["object_id"] = pa.array([f"{unit.key[:4]}-{s}" for s in seqs])
    for c in posterior_summary_columns():
        cols[c] = pa.array(np.asarray(seqs, float))
    cols["status"] = pa.array([status] * n)
    cols["n_samples"] = pa.array([10] * n, pa.int32())
    cols["_unit"] = pa.array([unit.key] * n)
    cols["_seq"] = pa.array(seqs, pa.int32())
    cols["_unit_rows"] = pa.array([total] * n, pa.int32())
    cols["_node"] = pa.array([node] * n)
    cols["_actor"] = pa.array([actor] * n)
    return pa.table([cols[f.name] for f in schema], schema=schema)


def test_parts_written_when_complete_deduplicated_and_ordered(tmp_path):
    units = [WorkUnit.make("prepared", f"s{i}", {"url": f"/s{i}"}) for i in range(3)]
    m = Manifest(str(tmp_path), units, {"model_id": "m"})
    m.open()
    schema = posterior_schema().with_metadata({b"ergo_ray.model_id": b"m"})
    written = []
    prog = ProgressLog(total_units=3)
    col = UnitCollector(m, schema, prog, on_write=lambda key, _rows: written.append(key))
    a, b, c = units
    # rows of two units interleaved in one batch, out of order
    col.add(pa.concat_tables([_batch(a, [2, 0], 3), _batch(b, [1], 2, status="error")]))
    col.add(_batch(a, [0], 3))             # a retried batch delivers row 0 again
    assert col.incomplete == sorted([a.key, b.key])
    col.add(_batch(b, [0], 2, node="n2", actor="a2"))
    col.add(_batch(a, [1], 3))
    col.add(_batch(c, [-1], 0))           # an empty unit's marker
    col.close()
    assert sorted(written) == sorted(u.key for u in units)
    assert col.incomplete == [] and col.duplicate_rows == 1
    assert dict(col.nodes) == {"n1": 4, "n2": 1}
    ta = pq.read_table(m.layout.part(a.key))
    assert ta.column("exsitu_frac_mean").to_pylist() == [0.0, 1.0, 2.0]
    assert ta.schema.names == posterior_schema().names
    assert ta.schema.metadata[b"ergo_ray.rows"] == b"3"
    tb = pq.read_table(m.layout.part(b.key))
    assert tb.schema.metadata[b"ergo_ray.errors"] == b"1"
    assert pq.read_table(m.layout.part(c.key)).num_rows == 0
    assert (prog.rows, prog.errors, prog.units_done) == (5, 1, 3)
    st = m.stats()
    assert (st.rows, st.errors, st.duplicates) == (5, 1, 0)
