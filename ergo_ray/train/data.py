"""Prepared shards → training data: Ray Data datasets for Ray Train, or arrays without Ray.

Input: one or more prepared-shard folders (``ergo-ray prepare --out URL``), each holding
``URL/shards/*.parquet`` with the catalogue columns, ``split`` and ``image``
(fixed_size_list<uint8>[3*S*S], channels i, r, g; KV metadata ``ergo_ray.image_shape``).
A URL may also point straight at a folder of Parquet files.

Datasets built here:

``train``
    Rows with ``split == "train"`` of every domain (simulations and the observed survey),
    re-weighted by ``domain_mix`` (see :func:`mix_factors`); column ``image`` only.
``val``
    A sample of up to ``monitor_rows`` rows with ``split == "val"``: ``image`` plus the
    monitor targets (:data:`MONITOR_TARGETS`; NaN where a domain has no truth).
``monitor``
    A fixed sample of up to ``monitor_rows`` training rows with the same columns: the
    reference set of the k-NN representation monitor.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ergo_ray.errors import ConfigError, InputError
from ergo_ray.io import storage as st
from ergo_ray.io.prepared import PreparedInput

if TYPE_CHECKING:
    import ray.data

    from ergo_ray.config.schema import StorageConfig

__all__ = [
    "MONITOR_TARGETS",
    "batch_images",
    "build_datasets",
    "iterate_batches",
    "mix_factors",
    "read_split",
    "split_counts",
]

log = logging.getLogger("ergo_ray")

#: Catalogue quantities the k-NN monitor regresses from the representation (truth is used
#: only to monitor, never to train).
MONITOR_TARGETS: tuple[str, ...] = ("log_mstar", "true_exsitu_frac", "redshift")


def split_counts(inputs: Sequence[PreparedInput], storage: StorageConfig | None = None
                 ) -> dict[tuple[str, str], int]:
    """Count rows per (domain, split) by reading only those two columns.

    Parameters
    ----------
    inputs : sequence of PreparedInput
        From :func:`discover_inputs`.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    dict
        ``{(domain, split): rows}``.
    """
    counts: dict[tuple[str, str], int] = {}
    for inp in inputs:
        for file_url in inp.files:
            fs, path = st.arrow_fs(file_url, storage)
            try:
                table = pq.read_table(path, filesystem=fs, columns=["domain", "split"])
            except Exception as err:
                msg = f"{st.redact(file_url)}: cannot read: {err}"
                raise InputError(msg, source=file_url) from err
            pairs = table.group_by(["domain", "split"]).aggregate([([], "count_all")])
            for d, s, n in zip(pairs["domain"].to_pylist(), pairs["split"].to_pylist(),
                               pairs["count_all"].to_pylist(), strict=True):
                counts[(d, s)] = counts.get((d, s), 0) + int(n)
    return counts


def mix_factors(domain_rows: Mapping[str, int], domain_mix: Mapping[str, float] | None
                ) -> dict[str, float]:
    """Per-domain sampling factors that give the training set the requested domain mix.

    The total number of training rows per pass is kept; domain ``d`` (``n_d`` rows, weight
    ``w_d``) contributes ``w_d / sum(w) * sum(n)`` rows, i.e. factor
    ``f_d = w_d / sum(w) * sum(n) / n_d``: its rows are repeated ``floor(f_d)`` times and a
    random fraction ``f_d - floor(f_d)`` is drawn on top, anew on every pass.

    Parameters
    ----------
    domain_rows : mapping of str to int
        Training rows per domain.
    domain_mix : mapping of str to float, optional
        Relative weight per domain (``cfg.clr.domain_mix``). None keeps the natural mix
        (every factor 1). Domains present in the data but missing from the mix get weight 0
        and are left out (with a warning); domains in the mix but not in the data are ignored.

    Returns
    -------
    dict of str to float
        Factor per domain with rows; 0 means the domain is left out.

    Raises
    ------
    ConfigError
        If a weight is negative or no domain with rows has a positive weight.
    """
    rows = {d: int(n) for d, n in domain_rows.items() if n > 0}
    if domain_mix is None:
        return {d: 1.0 for d in rows}
    bad = {d: w for d, w in domain_mix.items() if w < 0 or not math.isfinite(w)}
    if bad:
        raise ConfigError(f"clr.domain_mix weights must be >= 0, got {bad}")
    left_out = sorted(d for d in rows if domain_mix.get(d, 0.0) == 0.0)
    if left_out:
        log.warning("domains left out of NNCLR training by clr.domain_mix: %s", left_out)
    absent = sorted(set(domain_mix) - set(rows))
    if absent:
        log.warning("clr.domain_mix names domains without training rows: %s", absent)
    weights = {d: float(domain_mix.get(d, 0.0)) for d in rows}
    total_w = sum(weights.values())
    if total_w <= 0:
        msg = f"clr.domain_mix gives no weight to any domain in the data ({sorted(rows)})"
        raise ConfigError(msg)
    total_n = sum(rows.values())
    return {d: weights[d] / total_w * total_n / rows[d] for d in rows}


def _read_input(inp: PreparedInput, storage: StorageConfig | None, seed: int) -> ray.data.Dataset:
    import ray.data

    fs, _ = st.arrow_fs(inp.files[0], storage)
    paths = [st.locate(f).path for f in inp.files]
    return ray.data.read_parquet(paths, filesystem=fs,
                                 shuffle=ray.data.FileShuffleConfig(seed=seed))


def _with_columns(ds: ray.data.Dataset, inp: PreparedInput, columns: Sequence[str]
                  ) -> ray.data.Dataset:
    from ray.data.expressions import lit

    present = [c for c in columns if c in inp.columns]
    ds = ds.select_columns(present)
    for c in columns:
        if c not in inp.columns:
            ds = ds.with_column(c, lit(float("nan")))
    return ds.select_columns(list(columns))


def build_datasets(
    inputs: Sequence[PreparedInput],
    storage: StorageConfig | None = None,
    *,
    domain_mix: Mapping[str, float] | None = None,
    monitor_rows: int = 2000,
    seed: int = 0,
    materialize_samples: bool = True,
) -> dict[str, ray.data.Dataset]:
    """Build the ``train``, ``val`` and ``monitor`` Ray datasets (see the module docstring).

    Parameters
    ----------
    inputs : sequence of PreparedInput
        From :func:`discover_inputs`.
    storage : StorageConfig, optional
        Storage settings; the pyarrow filesystem travels with the datasets to the workers.
    domain_mix : mapping of str to float, optional
        Relative domain weights of the training set (:func:`mix_factors`).
    monitor_rows : int
        Rows sampled for ``val`` and for ``monitor`` (each).
    seed : int
        Seed of the file shuffle and of the samples.
    materialize_samples : bool
        Read ``val`` and ``monitor`` once now (they are small and iterated every epoch);
        otherwise every dataset stays lazy.

    Returns
    -------
    dict of str to ray.data.Dataset
        ``train`` is lazy and streams from storage on every pass.

    Raises
    ------
    InputError
        If there are no training or no validation rows.
    """
    from ray.data.expressions import col

    per_input = [split_counts([inp], storage) for inp in inputs]
    train_rows, n_val = _train_rows_and_val(per_input)
    n_train = sum(train_rows.values())
    if n_train == 0 or n_val == 0:
        msg = f"prepared inputs need rows in both the train and val splits " \
              f"(train: {n_train}, val: {n_val}); inputs: {[st.redact(p.url) for p in inputs]}"
        raise InputError(msg, source=inputs[0].url)
    factors = mix_factors(train_rows, domain_mix)
    log.info("NNCLR training rows per domain %s, mix factors %s",
             train_rows, {d: round(f, 3) for d, f in factors.items()})
    monitor_cols = ["image", *MONITOR_TARGETS]
    train_parts: list[ray.data.Dataset] = []
    val_parts: list[ray.data.Dataset] = []
    ref_parts: list[ray.data.Dataset] = []
    for i, (inp, inp_counts) in enumerate(zip(inputs, per_input, strict=True)):
        base = _read_input(inp, storage, seed + i)
        train = base.filter(expr=col("split") == "train")
        own = sorted(d for (d, s), n in inp_counts.items() if s == "train" and n > 0)
        train_parts += _mixed_train(train, own, factors, seed + 1000 * i)
        val = base.filter(expr=col("split") == "val")
        val_parts.append(_with_columns(val, inp, monitor_cols))
        ref_parts.append(_with_columns(train, inp, monitor_cols))
    # Integer seeds: the same validation and reference sample on every pass.
    frac_val = min(1.0, monitor_rows / n_val)
    frac_ref = min(1.0, monitor_rows / n_train)
    val_ds = _union(val_parts)
    ref_ds = _union(ref_parts)
    if frac_val < 1.0:
        val_ds = val_ds.random_sample(frac_val, seed=seed + 7)
    if frac_ref < 1.0:
        ref_ds = ref_ds.random_sample(frac_ref, seed=seed + 11)
    if materialize_samples:
        # Small fixed samples read every epoch: read them once into the object store.
        val_ds, ref_ds = val_ds.materialize(), ref_ds.materialize()
    return {"train": _union(train_parts), "val": val_ds, "monitor": ref_ds}


def _train_rows_and_val(
    per_input: Sequence[Mapping[tuple[str, str], int]],
) -> tuple[dict[str, int], int]:
    """Return the training rows per domain and the validation rows, over all inputs."""
    counts: dict[tuple[str, str], int] = {}
    for c in per_input:
        for key, n in c.items():
            counts[key] = counts.get(key, 0) + n
    train_rows = {d: n for (d, s), n in counts.items() if s == "train"}
    return train_rows, sum(n for (_, s), n in counts.items() if s == "val")


def _mixed_train(
    train: ray.data.Dataset, own: Sequence[str], factors: Mapping[str, float], seed: int
) -> list[ray.data.Dataset]:
    """One input's training images, each of its domains repeated by its mix factor."""
    import ray.data
    from ray.data.expressions import col

    images = train.select_columns(["image"])
    if all(factors[d] == 1.0 for d in own):
        return [images]
    parts: list[ray.data.Dataset] = []
    for j, domain in enumerate(own):
        factor = factors[domain]
        if factor <= 0:
            continue
        part = images if len(own) == 1 else \
            train.filter(expr=col("domain") == domain).select_columns(["image"])
        whole, frac = int(factor), factor - int(factor)
        parts.extend([part] * whole)
        if frac > 1e-9:
            # A new random draw on every pass over the data.
            parts.append(part.random_sample(
                frac, seed=ray.data.RandomSeedConfig(seed=seed + j)))
    return parts


def _union(parts: list[ray.data.Dataset]) -> ray.data.Dataset:
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def read_split(
    inputs: Sequence[PreparedInput],
    storage: StorageConfig | None = None,
    *,
    split: str,
    columns: Sequence[str] = ("image", *MONITOR_TARGETS),
    max_rows: int | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Read one split into memory without Ray (plain-PyTorch loops, benchmarks, tests).

    Parameters
    ----------
    inputs : sequence of PreparedInput
        From :func:`discover_inputs`.
    storage : StorageConfig, optional
        Storage settings.
    split : {"train", "val", "test"}
        Split to read.
    columns : sequence of str
        Columns to return; catalogue columns a domain lacks come back as NaN.
    max_rows : int, optional
        Keep a random sample of at most this many rows.
    seed : int
        Seed of that sample.

    Returns
    -------
    dict of str to numpy.ndarray
        ``image`` as uint8 (N, 3, S, S); ``domain``/string columns as object arrays; other
        columns as float64.
    """
    tables: list[pa.Table] = []
    for inp in inputs:
        present = [c for c in dict.fromkeys([*columns, "split"]) if c in inp.columns]
        for file_url in inp.files:
            fs, path = st.arrow_fs(file_url, storage)
            t = pq.read_table(path, filesystem=fs, columns=present,
                              filters=[("split", "==", split)])
            for c in columns:
                if c not in inp.columns:
                    t = t.append_column(c, pa.array(np.full(t.num_rows, np.nan)))
            tables.append(t.select(list(columns)))
    table = pa.concat_tables(tables)
    n = table.num_rows
    if max_rows is not None and n > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
        table = table.take(pa.array(keep))
    size = inputs[0].image_size
    out: dict[str, np.ndarray] = {}
    for c in columns:
        if c == "image":
            out[c] = batch_images(table, size)
        elif pa.types.is_string(table.schema.field(c).type):
            out[c] = np.asarray(table[c].to_pylist(), dtype=object)
        else:
            out[c] = table[c].to_numpy(zero_copy_only=False).astype(np.float64)
    return out


def batch_images(batch: pa.Table | Mapping[str, Any], size: int) -> np.ndarray:
    """Return the ``image`` column of a batch as uint8 (N, 3, S, S), zero-copy where possible.

    Parameters
    ----------
    batch : pyarrow.Table or mapping
        A pyarrow batch (Ray Data ``batch_format="pyarrow"``) or a dict of numpy arrays.
    size : int
        Stamp side S.

    Returns
    -------
    numpy.ndarray
        uint8 (N, 3, S, S), channels (i, r, g).
    """
    column = batch["image"]
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, pa.FixedSizeListArray):
        flat = column.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat, dtype=np.uint8).reshape(len(column), 3, size, size)
    arr = np.asarray(column)
    if arr.dtype == object:
        arr = np.stack([np.asarray(a, dtype=np.uint8) for a in arr])
    return arr.astype(np.uint8, copy=False).reshape(len(arr), 3, size, size)


def iterate_batches(
    images: np.ndarray, batch_size: int, *, seed: int = 0, drop_last: bool = True
) -> Iterator[np.ndarray]:
    """Endless shuffled batches of in-memory stamps (the plain-PyTorch counterpart of a shard).

    Parameters
    ----------
    images : numpy.ndarray
        uint8 (N, 3, S, S).
    batch_size : int
        Rows per batch.
    seed : int
        Seed of the per-pass permutations.
    drop_last : bool
        Drop the incomplete batch at the end of each pass.

    Yields
    ------
    numpy.ndarray
        uint8 (batch_size, 3, S, S).
    """
    if len(images) < batch_size:
        raise InputError(f"{len(images)} training images are fewer than one batch ({batch_size})")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(images))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield images[np.sort(order[start : start + batch_size])]
