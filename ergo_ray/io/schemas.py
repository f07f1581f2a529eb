"""Column names and pyarrow schemas of every table ergo_ray reads or writes.

The catalogue and posterior-catalogue columns are fixed by the user contract
(``shared/docs/contract.md``); the shard layouts are ours and versioned in the Parquet
key-value metadata (``ergo_ray.schema``).
"""

from __future__ import annotations

import pyarrow as pa

from ergo_ray.types import TARGETS

#: Version of the shard and catalogue layouts, written as ``ergo_ray.schema``.
SCHEMA_VERSION = "1"

META_VERSION = b"ergo_ray.version"
META_SCHEMA = b"ergo_ray.schema"
META_MODEL_ID = b"ergo_ray.model_id"
META_CONFIG = b"ergo_ray.config"
META_IMAGE_SHAPE = b"ergo_ray.image_shape"
META_KIND = b"ergo_ray.kind"

TRUTH_COLUMNS: tuple[str, ...] = (
    "true_exsitu_frac",
    "true_lmm_lookback_gyr",
    "true_lmm_log_mass",
)

#: The contract's catalogue columns (all datasets).
CATALOG_FIELDS: tuple[pa.Field, ...] = (
    pa.field("object_id", pa.string(), nullable=False),
    pa.field("root_id", pa.string(), nullable=False),
    pa.field("domain", pa.string(), nullable=False),
    pa.field("projection", pa.int32()),
    pa.field("redshift", pa.float64()),
    pa.field("log_mstar", pa.float64()),
    pa.field("true_exsitu_frac", pa.float64()),
    pa.field("true_lmm_lookback_gyr", pa.float64()),
    pa.field("true_lmm_log_mass", pa.float64()),
)
CATALOG_COLUMNS: tuple[str, ...] = tuple(f.name for f in CATALOG_FIELDS)
#: Columns every catalogue must have (truth may be absent for observed sets).
REQUIRED_COLUMNS: tuple[str, ...] = ("object_id", "root_id", "domain", "projection", "redshift")

#: Extra observables a catalogue may carry (used by ``match`` and the science figures).
OPTIONAL_FIELDS: tuple[pa.Field, ...] = (
    pa.field("ra", pa.float64()),
    pa.field("dec", pa.float64()),
    pa.field("i_mag", pa.float64()),
    pa.field("petro_r90_arcsec", pa.float64()),
)

#: Columns a prepared shard adds to the catalogue columns.
PREPARED_FIELDS: tuple[pa.Field, ...] = (
    pa.field("r50_px", pa.float64()),
    pa.field("r90_px", pa.float64()),
    pa.field("petro_r_px", pa.float64()),
    pa.field("crop_px", pa.float64()),
    pa.field("split", pa.string()),
)

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Summary statistics per target, in column order.
SUMMARY_STATS: tuple[str, ...] = ("map", "mean", "median", "std", "p05", "p16", "p84", "p95")


def posterior_summary_columns() -> tuple[str, ...]:
    """Return the ``{T}_{stat}`` columns plus ``p_no_major_merger``, in contract order."""
    cols = [f"{t}_{s}" for t in TARGETS for s in SUMMARY_STATS]
    cols.append("p_no_major_merger")
    return tuple(cols)


def posterior_schema(keep_representation: bool = False, rep_dim: int = 256) -> pa.Schema:
    """Return the schema of the posterior catalogue written by ``ergo-ray catalog``.

    Parameters
    ----------
    keep_representation : bool
        Add the ``representation`` column (fixed-size list of float32).
    rep_dim : int
        Length of the representation.

    Returns
    -------
    pyarrow.Schema
        The contract's columns with their types.
    """
    fields = [
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("root_id", pa.string()),
        pa.field("domain", pa.string()),
    ]
    fields += [pa.field(c, pa.float64()) for c in posterior_summary_columns()]
    fields += [
        pa.field("ood_score", pa.float64()),
        pa.field("n_samples", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ]
    if keep_representation:
        fields.append(pa.field("representation", pa.list_(pa.float32(), rep_dim)))
    return pa.schema(fields)


def catalog_schema(with_truth: bool = True) -> pa.Schema:
    """Return the contract catalogue schema (optionally without the ``true_*`` columns)."""
    fields = [f for f in CATALOG_FIELDS if with_truth or f.name not in TRUTH_COLUMNS]
    return pa.schema(fields)
