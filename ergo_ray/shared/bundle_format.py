"""The model-bundle file format: what ``train-cinn`` writes and every reader verifies.

A bundle holds everything ``catalog``, ``embed``, ``validate`` and ``compare`` need.

A bundle is one folder (local, ``file://`` or ``s3://``) holding

``encoder.pt``
    the frozen NNCLR encoder, exactly as ``train-nnclr`` exported it
    (:func:`ergo_ray.train.checkpoint.export_encoder`);
``cinn.pt``
    the conditional INN: ``{"arch": CinnArch, "state_dict"}`` (:mod:`ergo_ray.models.cinn`);
``baseline.pt`` (optional)
    the same cINN conditioned on the standardised (log M*, z) only;
``transforms.json``
    target transform and scaler, baseline condition scaler, OOD calibration, input size,
    preprocessing settings;
``config.yaml``
    the resolved configuration of the run (its ``preprocess`` section is the one the
    training shards were prepared with);
``reference.npy``, ``reference_kdist.npy``
    the OOD reference representations (raw, float32 (M, 256)) and their k-th neighbour
    distances;
``metrics.json``
    calibration and accuracy on the test split;
``manifest.json``
    the sha256 of every other file and ``model_id``, a hash of those digests.

Everything is plain data: weights load with ``torch.load(weights_only=True)``, and every
file is checked against the manifest before use, so a modified file is refused with a
:class:`~ergo_ray.errors.CheckpointError` naming it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ergo_ray import __version__
from ergo_ray.errors import CheckpointError, InputError, StorageError
from ergo_ray.io import storage as st

if TYPE_CHECKING:
    from ergo_ray.config.schema import RunConfig, StorageConfig
    from ergo_ray.models.targets import Standardizer, TargetTransform
    from ergo_ray.shared.ood_score import OodReference

log = logging.getLogger("ergo_ray")

__all__ = [
    "BASELINE_INPUTS",
    "BUNDLE_FORMAT",
    "MANIFEST",
    "OPTIONAL_FILES",
    "REQUIRED_FILES",
    "WIDENING_FILE",
    "bundle_config",
    "bundle_files",
    "jsonable",
    "load_npy",
    "load_torch",
    "npy_bytes",
    "read_verified",
    "torch_bytes",
    "write_bundle",
]

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
REQUIRED_FILES: tuple[str, ...] = (
    "encoder.pt",
    "cinn.pt",
    "transforms.json",
    "config.yaml",
    "reference.npy",
    "reference_kdist.npy",
    "metrics.json",
)
OPTIONAL_FILES: tuple[str, ...] = ("baseline.pt",)
#: Optional file of the shift-aware widening (``cinn.widening``).
WIDENING_FILE = "widening.json"
#: Condition of the baseline cINN (``baseline.pt``).
BASELINE_INPUTS: tuple[str, str] = ("log_mstar", "redshift")


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` a plain dict of tensors and scalars to bytes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def npy_bytes(arr: np.ndarray) -> bytes:
    """Serialise an array as ``.npy`` bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def load_torch(data: bytes, name: str, device: torch.device | str = "cpu") -> Any:
    """``torch.load`` bytes with ``weights_only=True``; a failure names the file."""
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as err:
        msg = f"{name}: cannot load weights safely (weights_only=True): {err}"
        raise CheckpointError(msg) from err


def load_npy(data: bytes, name: str) -> np.ndarray:
    """Load ``.npy`` bytes without pickle; a failure names the file."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:
        msg = f"{name}: not a valid .npy array: {err}"
        raise CheckpointError(msg) from err


def _model_id(digests: Mapping[str, str]) -> str:
    canon = json.dumps(dict(sorted(digests.items())), separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def write_bundle(
    url: str, files: Mapping[str, bytes], storage: StorageConfig | None = None
) -> str:
    """Write the bundle's files, then its manifest (last, so a bundle is complete or absent).

    Parameters
    ----------
    url : str
        Bundle folder.
    files : mapping of str to bytes
        File name → content; must include every name in :data:`REQUIRED_FILES`.
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    str
        The ``model_id``.
    """
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        msg = f"cannot write bundle {st.redact(url)}: missing {missing}"
        raise CheckpointError(msg)
    # An old manifest must not vouch for a half-written new bundle.
    st.remove(st.join(url, MANIFEST), storage)
    digests: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for name, data in files.items():
        st.write_bytes(st.join(url, name), data, storage)
        digests[name] = hashlib.sha256(data).hexdigest()
        sizes[name] = len(data)
    model_id = _model_id(digests)
    manifest = {
        "format": BUNDLE_FORMAT,
        "model_id": model_id,
        "ergo_ray_version": __version__,
        "files": {
            n: {"sha256": digests[n], "bytes": sizes[n]} for n in sorted(digests)
        },
    }
    st.write_bytes(
        st.join(url, MANIFEST), json.dumps(manifest, indent=2).encode(), storage
    )
    log.info("model bundle %s written to %s", model_id, st.redact(url))
    return model_id


def read_verified(
    url: str, storage: StorageConfig | None = None, names: tuple[str, ...] | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read a bundle's manifest and files, checking every sha256.

    Parameters
    ----------
    url : str
        Bundle folder.
    storage : StorageConfig, optional
        Storage settings.
    names : tuple of str, optional
        Read only these files (default: every file in the manifest).

    Returns
    -------
    manifest : dict
        The parsed manifest.
    files : dict of str to bytes
        Verified file contents.

    Raises
    ------
    InputError
        If there is no readable manifest at ``url`` (no bundle there).
    CheckpointError
        If the manifest is malformed, a file is missing, or a digest differs.
    """
    where = st.redact(url)
    try:
        raw = st.read_bytes(st.join(url, MANIFEST), storage)
    except StorageError as err:
        # a path that holds no bundle is the user's mistake naming it (exit status 2)
        msg = f"{where}: not a model bundle (no readable {MANIFEST}): {err}"
        raise InputError(msg, url) from err
    try:
        manifest = json.loads(raw)
        entries = {n: e["sha256"] for n, e in manifest["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        msg = f"{where}/{MANIFEST}: malformed manifest: {err}"
        raise CheckpointError(msg) from err
    if manifest.get("format") != BUNDLE_FORMAT:
        msg = (
            f"{where}: bundle format {manifest.get('format')!r} is not supported "
            f"(this version reads format {BUNDLE_FORMAT})"
        )
        raise CheckpointError(msg)
    missing = [f for f in REQUIRED_FILES if f not in entries]
    if missing:
        msg = f"{where}: the manifest lacks required files {missing}"
        raise CheckpointError(msg)
    if _model_id(entries) != manifest.get("model_id"):
        msg = (
            f"{where}/{MANIFEST}: model_id does not match the file digests; the manifest "
            f"was modified"
        )
        raise CheckpointError(msg)
    out: dict[str, bytes] = {}
    for name in names or tuple(entries):
        if name not in entries:
            continue
        try:
            data = st.read_bytes(st.join(url, name), storage)
        except StorageError as err:
            msg = f"{where}: bundle file {name} is missing or unreadable: {err}"
            raise CheckpointError(msg) from err
        got = hashlib.sha256(data).hexdigest()
        if got != entries[name]:
            msg = (
                f"{where}/{name}: sha256 {got[:12]}… does not match the manifest "
                f"({entries[name][:12]}…); the file was modified or corrupted — refusing "
                f"to load this bundle"
            )
            raise CheckpointError(msg)
        out[name] = data
    return manifest, out


def bundle_config(cfg: RunConfig) -> str:
    """Return the resolved configuration as stored in ``config.yaml``."""
    from ergo_ray.config.loader import resolved_yaml

    return resolved_yaml(cfg)


def bundle_files(
    *,
    transform: TargetTransform,
    run_cfg: RunConfig,
    ood: OodReference,
    metrics: dict[str, Any],
    input_size: int,
    rep_dim: int,
    observables: Sequence[str] = (),
    baseline_scaler: Standardizer | None = None,
) -> dict[str, bytes]:
    """Return the bundle's metadata files (everything but the weights).

    Parameters
    ----------
    transform : TargetTransform
        Fitted target transform.
    run_cfg : RunConfig
        Resolved configuration, with the ``preprocess`` section of the training stamps.
    ood : OodReference
        OOD reference set and calibration.
    metrics : dict
        Test-split metrics (``metrics.json``; non-finite values become null).
    input_size : int
        Stamp side S.
    rep_dim : int
        Representation length.
    observables : sequence of str
        Catalogue columns appended to the representation as the cINN's condition.
    baseline_scaler : Standardizer, optional
        Condition scaler of the baseline, when ``baseline.pt`` is written.

    Returns
    -------
    dict of str to bytes
        ``transforms.json``, ``config.yaml``, ``reference.npy``, ``reference_kdist.npy``
        and ``metrics.json``.
    """
    transforms = {
        "targets": transform.to_dict(),
        "input_size": int(input_size),
        "rep_dim": int(rep_dim),
        "observables": list(observables),
        "preprocess": run_cfg.preprocess.model_dump(mode="json"),
        "baseline_inputs": list(BASELINE_INPUTS) if baseline_scaler else None,
        "baseline_condition": baseline_scaler.to_dict() if baseline_scaler else None,
        "ood": ood.to_dict(),
    }
    return {
        "transforms.json": json.dumps(transforms, indent=2).encode(),
        "config.yaml": bundle_config(run_cfg).encode(),
        "reference.npy": npy_bytes(ood.reference.astype(np.float32)),
        "reference_kdist.npy": npy_bytes(ood.self_kdist.astype(np.float64)),
        "metrics.json": json.dumps(
            jsonable(metrics), indent=2, allow_nan=False
        ).encode(),
    }


def jsonable(obj: Any) -> Any:
    """Return ``obj`` with non-finite floats as None and numpy scalars as Python ones.

    Parameters
    ----------
    obj : Any
        Nested dicts, lists and tuples of numbers, strings and None.

    Returns
    -------
    Any
        The same structure, strict-JSON serialisable (``metrics.json``).
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
