"""``ergo-ray match`` as a library: read two sets, match them, write the pairs.

Inputs are prepared folders (``URL/shards/``), catalogue folders (``URL/catalog/``), a
folder of Parquet files or one Parquet file, each with ``object_id``, ``redshift``,
``i_mag`` and ``r90_px``. Only those columns are read (never the images). Output:
``OUT/pairs/part-00000.parquet`` with one row per matched pair (``observed_id``,
``simulated_id``, the three matched quantities of both, ``rank`` in the visiting order) and
``OUT/summary.json`` with the counts.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray.errors import CatalogSchemaError, InputError
from ergo_ray.io import storage as st
from ergo_ray.io.catalog import part_name, write_part
from ergo_ray.preprocess.match import BoxTolerance, match_sets

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig, StorageConfig

__all__ = ["MATCH_COLUMNS", "match_folders", "read_match_columns"]

log = logging.getLogger("ergo_ray")

#: Columns a set needs for matching, in the order of :func:`match_sets`' features.
MATCH_COLUMNS: tuple[str, ...] = ("redshift", "i_mag", "r90_px")


def _parquet_files(url: str, storage: StorageConfig | None) -> list[str]:
    if url.endswith(".parquet"):
        return [url]
    for sub in ("shards", "catalog"):
        sub_url = st.join(url, sub)
        if st.exists(sub_url, storage):
            files = st.list_files(sub_url, storage, suffixes=(".parquet",))
            if files:
                return files
    files = st.list_files(url, storage, suffixes=(".parquet",))
    files = [f for f in files if "/_" not in f[len(url):] and "/errors/" not in f[len(url):]]
    if not files:
        msg = f"{st.redact(url)}: no Parquet files (expected shards/ or catalog/ parts)"
        raise InputError(msg, url)
    return files


def read_match_columns(url: str, storage: StorageConfig | None = None) -> pa.Table:
    """Read ``object_id`` and the matching columns of a set.

    Parameters
    ----------
    url : str
        Prepared folder, catalogue folder, folder of Parquet files or one Parquet file.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    pyarrow.Table
        ``object_id``, ``domain`` (when present) and :data:`MATCH_COLUMNS` as float64.

    Raises
    ------
    CatalogSchemaError
        If a file lacks one of the columns (the message lists them and names the file).
    """
    need = ("object_id", *MATCH_COLUMNS)
    tables = []
    for f in _parquet_files(url, storage):
        fs, path = st.arrow_fs(f, storage)
        with fs.open_input_file(path) as fh:
            pf = pq.ParquetFile(fh)
            names = set(pf.schema_arrow.names)
            missing = [c for c in need if c not in names]
            if missing:
                msg = (f"{st.redact(f)}: missing column(s) {', '.join(map(repr, missing))} "
                       f"needed for matching (prepare the set first for r90_px)")
                raise CatalogSchemaError(msg, f)
            cols = [*need, *(["domain"] if "domain" in names else [])]
            t = pf.read(columns=cols)
        for c in MATCH_COLUMNS:
            t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(pa.float64()))
        if "domain" not in t.column_names:
            t = t.append_column("domain", pa.nulls(t.num_rows, pa.string()))
        tables.append(t.select(["object_id", "domain", *MATCH_COLUMNS]))
    return pa.concat_tables(tables)


def _features(t: pa.Table) -> np.ndarray:
    return np.stack(
        [t.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in MATCH_COLUMNS],
        axis=1,
    )


def match_folders(observed_url: str, simulated_url: str, out_url: str, cfg: RunConfig
                  ) -> dict[str, Any]:
    """Match a simulated set to an observed set and write the pairs.

    Parameters
    ----------
    observed_url, simulated_url : str
        The observed (source) and simulated (target) sets.
    out_url : str
        Output folder.
    cfg : RunConfig
        ``match`` (tolerances, seed) and ``storage`` sections.

    Returns
    -------
    dict
        ``observed``, ``simulated`` (rows read), ``observed_valid``, ``simulated_valid``
        (rows without NaN), ``pairs`` and ``seconds``.
    """
    t0 = time.perf_counter()
    storage = cfg.storage
    obs_t = read_match_columns(observed_url, storage)
    sim_t = read_match_columns(simulated_url, storage)
    obs, sim = _features(obs_t), _features(sim_t)
    m = cfg.match
    tol = BoxTolerance(m.dz, m.dmag, m.dr90_px)
    oi, si = match_sets(obs, sim, tol, seed=m.seed)
    pairs = pa.table({
        "observed_id": obs_t.column("object_id").take(pa.array(oi)),
        "simulated_id": sim_t.column("object_id").take(pa.array(si)),
        "observed_domain": obs_t.column("domain").take(pa.array(oi)),
        "simulated_domain": sim_t.column("domain").take(pa.array(si)),
        **{f"{c}_observed": pa.array(obs[oi, k]) for k, c in enumerate(MATCH_COLUMNS)},
        **{f"{c}_simulated": pa.array(sim[si, k]) for k, c in enumerate(MATCH_COLUMNS)},
        "rank": pa.array(np.arange(oi.size, dtype=np.int64)),
    })
    write_part(st.join(out_url, "pairs", part_name(0)), pairs, storage, kind="match-pairs",
               extra_meta={"ergo_ray.match": json.dumps(m.model_dump(mode="json"))})
    summary = {
        "observed": obs_t.num_rows,
        "simulated": sim_t.num_rows,
        "observed_valid": int(np.isfinite(obs).all(axis=1).sum()),
        "simulated_valid": int(np.isfinite(sim).all(axis=1).sum()),
        "pairs": int(oi.size),
        "tolerance": {"dz": tol.dz, "dmag": tol.dmag, "dr90_px": tol.dr90},
        "seed": m.seed,
    }
    st.write_bytes(st.join(out_url, "summary.json"), json.dumps(summary, indent=2).encode(),
                   storage)
    summary["seconds"] = time.perf_counter() - t0
    return summary
