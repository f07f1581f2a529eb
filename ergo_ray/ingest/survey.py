"""``ingest-survey``: HSC-SSP service cutouts + a user catalogue → an ergo_ray catalogue.

The user catalogue (CSV, FITS table or Parquet) maps each cutout to its galaxy. Cutouts are
found by the service's file naming (``{lineno}-cutout-HSC-{G,R,I}-{tract}-{rerun}.fits``);
the line number comes from a ``cutout_lineno``/``lineno`` column or, failing that, from the
row's position in the uploaded list (the service numbers the first object 2). Every object is
read once as a check in Ray tasks: one with a missing band or an unreadable file goes to the
errors table with its reason; the rest form the catalogue (no truth). Masked pixels stay in
the MASK planes; preprocessing excludes BAD/SAT/NO_DATA pixels (method.md §2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ergo_ray.config.schema import StorageConfig
from ergo_ray.errors import CatalogSchemaError
from ergo_ray.io import layouts, sources, storage
from ergo_ray.io.catalog import part_name, rows_to_table, write_part
from ergo_ray.io.user_catalog import read_user_catalog

log = logging.getLogger("ergo_ray")

#: Accepted names of each catalogue column in a user catalogue, in order of preference.
ALIASES: dict[str, tuple[str, ...]] = {
    "object_id": ("object_id", "objid", "id"),
    "cutout_lineno": ("cutout_lineno", "lineno", "line"),
    "ra": ("ra", "RA", "i_ra"),
    "dec": ("dec", "DEC", "Dec", "i_dec"),
    "redshift": ("redshift", "z", "z_spec", "specz_redshift", "specz", "photoz", "photoz_best"),
    "log_mstar": ("log_mstar", "logmstar", "lgm_tot_p50", "mstar_log"),
    "petro_r90_arcsec": ("petro_r90_arcsec", "petroR90_r", "petro_r90"),
    "i_mag": ("i_mag", "i_cmodel_mag_ge", "i_cmodel_mag", "imag"),
}
REQUIRED = ("ra", "dec", "redshift")


@dataclass(frozen=True)
class SurveyIngestOptions:
    """Plain arguments of one ingest-survey run."""

    cutouts: str
    catalog: str
    domain: str
    out: str
    max_objects: int = 64


def normalise_catalog(table: pa.Table, domain: str, source: str) -> pa.Table:
    """Map a user catalogue's columns to the contract's names.

    Parameters
    ----------
    table : pyarrow.Table
        The user's catalogue.
    domain : str
        Value of the ``domain`` column.
    source : str
        Catalogue URL, named in errors.

    Returns
    -------
    pyarrow.Table
        Columns ``object_id``, ``root_id``, ``domain``, ``projection``, ``cutout_lineno``,
        ``ra``, ``dec``, ``redshift`` and, where present, ``log_mstar``,
        ``petro_r90_arcsec``, ``i_mag``.

    Raises
    ------
    CatalogSchemaError
        If ``ra``, ``dec`` or ``redshift`` cannot be found; the message lists the accepted names.
    """
    found: dict[str, str] = {}
    for name, options in ALIASES.items():
        for opt in options:
            if opt in table.column_names:
                found[name] = opt
                break
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        wanted = "; ".join(f"{c}: one of {', '.join(ALIASES[c])}" for c in missing)
        msg = (f"{storage.redact(source)}: missing column(s) {missing} ({wanted}); "
               f"has {table.column_names}")
        raise CatalogSchemaError(msg, source)
    n = table.num_rows
    col = lambda c: table.column(found[c]).to_numpy(zero_copy_only=False)  # noqa: E731
    lineno = (col("cutout_lineno").astype(np.int64) if "cutout_lineno" in found
              else np.arange(n, dtype=np.int64) + 2)
    ids = ([str(v) for v in col("object_id")] if "object_id" in found
           else [f"{domain}-line-{k}" for k in lineno])
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        msg = f"{storage.redact(source)}: object_id {dup!r} appears more than once"
        raise CatalogSchemaError(msg, source)
    out: dict[str, Any] = {
        "object_id": pa.array(ids, pa.string()),
        "root_id": pa.array(ids, pa.string()),
        "domain": pa.array([domain] * n, pa.string()),
        "projection": pa.array(np.zeros(n, np.int32)),
        "cutout_lineno": pa.array(lineno),
    }
    for name in ("redshift", "ra", "dec", "log_mstar", "petro_r90_arcsec", "i_mag"):
        if name in found:
            out[name] = pa.array(col(name).astype(np.float64))
    return pa.table(out)


def _check_unit(unit: layouts.Unit, part: int, out: str, store: StorageConfig | None
                ) -> dict[str, int]:
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for row, result in sources.read_unit(unit, store):
        if isinstance(result, Exception):
            where = storage.join(unit["base"], row["file"]) if row.get("file") else unit["base"]
            errors.append({"object_id": row.get("object_id"),
                           "input_url": storage.redact(where),
                           "reason": getattr(result, "reason", None) or type(result).__name__,
                           "message": str(result)})
        else:
            rows.append(row)
    if rows:
        write_part(storage.join(out, "catalog", part_name(part)), rows_to_table(rows), store)
    if errors:
        write_part(storage.join(out, "errors", part_name(part)), pa.Table.from_pylist(errors),
                   store,
                   kind="errors")
    return {"rows": len(rows), "errors": len(errors)}


def run_ingest_survey(opts: SurveyIngestOptions, store: StorageConfig | None) -> dict[str, int]:
    """Run ingest-survey as Ray tasks; returns the counts of catalogue rows and errors."""
    import ray

    user = read_user_catalog(opts.catalog, store)
    table = normalise_catalog(user, opts.domain, opts.catalog)
    staging = storage.join(opts.out, "_staging")
    write_part(storage.join(staging, "catalog", part_name(0)), table, store)
    units = sources.discover(opts.cutouts, store, catalog_url=staging, max_objects=opts.max_objects)
    task = ray.remote(num_cpus=0.5, max_retries=3)(_check_unit)
    pending = [task.remote(u, i, opts.out, store) for i, u in enumerate(units)]
    totals = {"rows": 0, "errors": 0}
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for counts in ray.get(ready):
            for key in totals:
                totals[key] += counts[key]
    storage.remove(staging, store, recursive=True)
    log.info("ingest-survey: %d galaxies, %d errors", totals["rows"], totals["errors"])
    return totals
