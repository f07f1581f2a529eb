"""Truth for TNG-format HSC mocks from TNG's supplementary catalogues.

Definitions (method.md §4.2, formats research §2.5–2.7):

* ``true_exsitu_frac = StellarMassExSitu / StellarMassTotal`` from the StellarAssembly catalogue
  ``galaxies_{snap:03d}.hdf5`` (all bound stars); NaN when the total is 0.
* ``log_mstar = log10(StellarMassTotal · 1e10 / h)`` with TNG's h = 0.6774.
* ``true_lmm_lookback_gyr = age(z_snap) − age(z[SnapNumLastMajorMerger])`` from the galaxy's own
  epoch, with the TNG cosmology (:mod:`ergo_ray.cosmology`) and the
  simulation's snapshot redshift table; NaN when ``SnapNumLastMajorMerger == -1``.
* ``true_lmm_log_mass = log10(MassLastMajorMerger · 1e10 / h)``; NaN when there was none.

The snapshot → redshift table is never interpolated or guessed: a snapshot missing from the
table is an :class:`~ergo_ray.errors.InputError`.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ergo_ray.cosmology import H_LITTLE, age_gyr
from ergo_ray.errors import InputError

#: StellarAssembly / MergerHistory mass unit in solar masses.
MASS_UNIT = 1e10 / H_LITTLE

_NAME = re.compile(
    r"shalo_(?P<snap>\d{3})-(?P<subhalo>\d+)_v(?P<proj>[0-3])_HSC_GRI(?:ZY)?"
    r"\.fits(?:\.gz|\.fz)?$"
)


@dataclass(frozen=True)
class MockImageName:
    """The parts of a TNG HSC-realistic mock file name.

    Attributes
    ----------
    snap : int
        Snapshot number.
    subhalo : int
        Subfind ID at that snapshot.
    projection : int
        Camera 0–3 (``v0``–``v3``).
    """

    snap: int
    subhalo: int
    projection: int


def parse_image_name(name: str) -> MockImageName | None:
    """Parse ``shalo_{snap:03d}-{subhalo}_v{cam}_HSC_GRIZY.fits``; None if it does not match."""
    m = _NAME.search(name)
    if not m:
        return None
    return MockImageName(int(m["snap"]), int(m["subhalo"]), int(m["proj"]))


def read_snapshot_table(data: bytes, source: str) -> dict[int, float]:
    """Parse a snapshot → redshift table.

    Accepts the TNG API's JSON list of snapshots (``[{"number": 72, "redshift": 0.3999...}, ...]``)
    or a CSV with header ``number,redshift`` (also ``snap``/``snapnum`` and ``z``).

    Parameters
    ----------
    data : bytes
        File content.
    source : str
        Where it came from, for error messages.

    Returns
    -------
    dict of int to float
        Snapshot number → redshift.

    Raises
    ------
    InputError
        If the file cannot be parsed or holds no rows.
    """
    text = data.decode("utf-8", errors="replace").strip()
    table: dict[int, float] = {}
    try:
        if text.startswith(("[", "{")):
            items = json.loads(text)
            if isinstance(items, Mapping):
                items = items.get("snapshots", items.get("results", []))
            for rec in items:
                table[int(rec["number"])] = float(rec["redshift"])
        else:
            import csv

            reader = csv.DictReader(io.StringIO(text))
            for rec in reader:
                low = {k.strip().lower(): v for k, v in rec.items() if k}
                snap = low.get("number", low.get("snap", low.get("snapnum")))
                z = low.get("redshift", low.get("z"))
                if snap is None or z is None:
                    msg = f"{source}: snapshot table needs columns number,redshift; got {list(rec)}"
                    raise InputError(msg, source)
                table[int(snap)] = float(z)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        msg = f"{source}: cannot parse the snapshot table: {err}"
        raise InputError(msg, source) from err
    if not table:
        msg = f"{source}: the snapshot table is empty"
        raise InputError(msg, source)
    return table


def truth_from_catalogues(
    *,
    snap: int,
    stellar_exsitu: np.ndarray,
    stellar_total: np.ndarray,
    snap_last_major: np.ndarray,
    mass_last_major: np.ndarray,
    snapshots: Mapping[int, float],
    source: str = "",
) -> dict[str, np.ndarray]:
    """Compute the catalogue's truth columns for galaxies of one snapshot.

    Parameters
    ----------
    snap : int
        The galaxies' snapshot.
    stellar_exsitu, stellar_total : numpy.ndarray
        StellarAssembly ``StellarMassExSitu`` and ``StellarMassTotal`` (10^10 Msun/h).
    snap_last_major : numpy.ndarray
        MergerHistory ``SnapNumLastMajorMerger`` (−1 for none).
    mass_last_major : numpy.ndarray
        MergerHistory ``MassLastMajorMerger`` (10^10 Msun/h).
    snapshots : mapping of int to float
        Snapshot → redshift table of the simulation.
    source : str
        Named in errors.

    Returns
    -------
    dict of str to numpy.ndarray
        ``redshift``, ``log_mstar``, ``true_exsitu_frac``, ``true_lmm_lookback_gyr``,
        ``true_lmm_log_mass``.

    Raises
    ------
    InputError
        If a needed snapshot is missing from the table.
    """
    needed = {int(snap)} | {int(s) for s in np.unique(snap_last_major) if s >= 0}
    missing = sorted(needed - set(snapshots))
    if missing:
        msg = (f"{source}: snapshot(s) {missing} are not in the snapshot table; "
               "pass the simulation's full table with --snapshots")
        raise InputError(msg, source)
    total = np.asarray(stellar_total, dtype=float)
    exsitu = np.asarray(stellar_exsitu, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(total > 0, exsitu / np.where(total > 0, total, 1.0), np.nan)
        log_mstar = np.where(
            total > 0, np.log10(np.where(total > 0, total, 1.0) * MASS_UNIT), np.nan
        )
    z = float(snapshots[int(snap)])
    slm = np.asarray(snap_last_major, dtype=int)
    has = slm >= 0
    lookback = np.full(slm.shape, np.nan)
    if has.any():
        z_merge = np.array([snapshots[int(s)] for s in slm[has]])
        lookback[has] = age_gyr(np.array([z]))[0] - age_gyr(z_merge)
    mlm = np.asarray(mass_last_major, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mass = np.where(
            has & (mlm > 0), np.log10(np.where(mlm > 0, mlm, 1.0) * MASS_UNIT), np.nan
        )
    return {
        "redshift": np.full(slm.shape, z),
        "log_mstar": log_mstar,
        "true_exsitu_frac": frac,
        "true_lmm_lookback_gyr": lookback,
        "true_lmm_log_mass": log_mass,
    }
