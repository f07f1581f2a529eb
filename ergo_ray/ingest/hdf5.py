"""Read selected rows of TNG supplementary HDF5 catalogues from any URL."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ergo_ray.config.schema import StorageConfig
from ergo_ray.errors import InputError
from ergo_ray.io import storage

ASSEMBLY_NAMES = ("galaxies_{snap:03d}.hdf5",)
MERGER_NAMES = ("MergerHistory_{snap:03d}.hdf5", "merger_history_{snap:03d}.hdf5")
ASSEMBLY_FIELDS = ("StellarMassExSitu", "StellarMassTotal")
MERGER_FIELDS = ("SnapNumLastMajorMerger", "MassLastMajorMerger")


def find_catalogue(folder: str, names: Sequence[str], snap: int,
                   store: StorageConfig | None) -> str:
    """Return the URL of a snapshot's catalogue file in a folder (first name that exists).

    Raises
    ------
    InputError
        If none of the candidate names exists.
    """
    tried = []
    for pattern in names:
        url = storage.join(folder, pattern.format(snap=snap))
        tried.append(url)
        if storage.exists(url, store):
            return url
    names = ", ".join(p.rsplit("/", 1)[-1] for p in tried)
    msg = f"no catalogue for snapshot {snap} in {storage.redact(folder)} (tried {names})"
    raise InputError(msg, folder)


def read_rows(url: str, fields: Sequence[str], index: np.ndarray,
              store: StorageConfig | None, group: str | None = None) -> dict[str, np.ndarray]:
    """Read ``fields`` at the Subfind IDs ``index`` from an HDF5 catalogue.

    Parameters
    ----------
    url : str
        HDF5 file URL.
    fields : sequence of str
        Dataset names (at the file root, or under ``group``).
    index : numpy.ndarray
        Subfind IDs (row numbers), any order, repeats allowed.
    store : StorageConfig, optional
        Storage settings.
    group : str, optional
        HDF5 group holding the datasets.

    Returns
    -------
    dict of str to numpy.ndarray
        One array per field, in the order of ``index``.

    Raises
    ------
    InputError
        If the file is not HDF5, a field is missing, or an ID is out of range.
    """
    import h5py

    index = np.asarray(index, dtype=np.int64)
    uniq, inverse = np.unique(index, return_inverse=True)
    out: dict[str, np.ndarray] = {}
    fs, path = storage.fsspec_fs(url, store)
    try:
        with fs.open(path, "rb") as fh, h5py.File(fh, "r") as h5:
            node = h5[group] if group else h5
            for name in fields:
                if name not in node:
                    msg = (f"{storage.redact(url)}: dataset {name!r} missing; "
                           f"has {sorted(node.keys())[:12]}")
                    raise InputError(msg, url)
                ds = node[name]
                if uniq.size and (uniq[-1] >= ds.shape[0] or uniq[0] < 0):
                    msg = (f"{storage.redact(url)}: subhalo ID {int(uniq[-1])} out of range "
                           f"for {name} (length {ds.shape[0]})")
                    raise InputError(msg, url)
                vals = ds[uniq] if uniq.size else np.empty(0, ds.dtype)
                out[name] = np.asarray(vals)[inverse]
    except InputError:
        raise
    except OSError as err:
        msg = f"{storage.redact(url)}: not a readable HDF5 file ({err})"
        raise InputError(msg, url) from err
    return out
