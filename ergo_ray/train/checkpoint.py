"""Saving and loading NNCLR training state and the exported encoder.

Everything is written with ``torch.save`` of plain dicts of tensors and Python scalars,
strings, lists and dicts, and read back with ``torch.load(weights_only=True)``: loading
never executes code from the file.

Two files:

``state.pt`` (inside each Ray Train checkpoint folder)
    ``{"format", "version", "epoch", "model", "optimizer", "scheduler", "scaler",
    "support_set": {"mode", "bank": (R, N, D), "ptr": (R, 1)}, "config"}`` — everything
    needed to continue training. ``R`` is 1 for a ``"global"`` support set (identical on
    all ranks) and the number of workers for ``"per_worker"``.
``encoder.pt`` (``OUT/encoder.pt``)
    what inference needs, in the format of :mod:`ergo_ray.shared.encoder_file`.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from ergo_ray.errors import CheckpointError, StorageError
from ergo_ray.io import storage as st
from ergo_ray.shared.encoder_file import ENCODER_FILE, encoder_bytes, encoder_from_bytes

if TYPE_CHECKING:
    from torch import nn

    from ergo_ray.config.schema import StorageConfig
    from ergo_ray.models.encoder import Encoder

__all__ = [
    "ENCODER_FILE",
    "METRICS_FILE",
    "STATE_FILE",
    "append_metrics",
    "check_compatible",
    "export_encoder",
    "load_encoder",
    "load_training_state",
    "read_metrics",
    "save_training_state",
]

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"
_STATE_FORMAT = "ergo_ray.nnclr-state"
_VERSION = 1

#: ``clr`` keys that fix the shapes of saved tensors: a checkpoint is only resumed (and an
#: encoder only loaded) when they agree.
ARCHITECTURE_KEYS: tuple[str, ...] = (
    "widths", "blocks", "rep_dim", "proj_dim", "pred_hidden", "memory_bank_size",
)


def _load_bytes(data: bytes, source: str) -> dict[str, Any]:
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        msg = f"{st.redact(source)}: not a loadable checkpoint: {err}"
        raise CheckpointError(msg) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{st.redact(source)}: checkpoint is not a dict")
    return obj


def save_training_state(directory: str, state: Mapping[str, Any]) -> str:
    """Write ``state.pt`` into a local folder (a Ray Train checkpoint being assembled).

    Parameters
    ----------
    directory : str
        Existing local folder.
    state : mapping
        Training state (see the module docstring); ``format``/``version`` are added.

    Returns
    -------
    str
        Path of the written file.
    """
    path = os.path.join(directory, STATE_FILE)
    torch.save({"format": _STATE_FORMAT, "version": _VERSION, **state}, path)
    return path


def load_training_state(directory: str) -> dict[str, Any]:
    """Read ``state.pt`` from a local checkpoint folder (``weights_only=True``).

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable or not an NNCLR training state.
    """
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no NNCLR training state in this checkpoint")
    with open(path, "rb") as fh:
        state = _load_bytes(fh.read(), path)
    if state.get("format") != _STATE_FORMAT:
        msg = f"{path}: not an NNCLR training state (format {state.get('format')!r})"
        raise CheckpointError(msg)
    return state


def check_compatible(saved_clr: Mapping[str, Any], clr: Mapping[str, Any], source: str) -> None:
    """Refuse to resume from (or load) a checkpoint of a different architecture.

    Parameters
    ----------
    saved_clr, clr : mapping
        The ``clr`` config sections of the checkpoint and of the current run (JSON form).
    source : str
        The checkpoint's location, for the message.

    Raises
    ------
    CheckpointError
        Naming the first differing key.
    """
    for key in ARCHITECTURE_KEYS:
        a, b = saved_clr.get(key), clr.get(key)
        if isinstance(a, tuple | list) and isinstance(b, tuple | list):
            a, b = list(a), list(b)
        if a != b:
            msg = f"{st.redact(source)}: checkpoint has clr.{key}={a!r} but this run has " \
                  f"{b!r}; use a new --out or the original configuration"
            raise CheckpointError(msg)


def export_encoder(
    url: str, encoder: nn.Module, *, storage: StorageConfig | None = None, **meta: Any
) -> None:
    """Write the trained encoder to ``url`` (``OUT/encoder.pt``).

    Parameters
    ----------
    url : str
        Destination file URL.
    encoder : nn.Module
        The encoder, unwrapped from DDP.
    storage : StorageConfig, optional
        Storage settings.
    **meta
        ``clr``, ``preprocess``, ``in_size``, ``rep_dim`` and ``epoch``, as
        :func:`ergo_ray.shared.encoder_file.encoder_bytes` takes them.
    """
    st.write_bytes(url, encoder_bytes(encoder, **meta), storage)


def load_encoder(url: str, storage: StorageConfig | None = None) -> tuple[Encoder, dict[str, Any]]:
    """Load an exported encoder.

    Parameters
    ----------
    url : str
        The ``encoder.pt`` file, or a folder holding one (a ``train-nnclr`` output or a
        model bundle).
    storage : StorageConfig, optional
        Storage settings.

    Returns
    -------
    tuple of (Encoder, dict)
        The encoder in eval mode on the CPU, and its meta (``clr``, ``preprocess``,
        ``in_size``, ``rep_dim``, ``epoch``, ``ergo_ray_version``).

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, not an encoder, or its weights do not fit the
        architecture its meta describes.
    """
    file_url = url if str(url).endswith(".pt") else st.join(url, ENCODER_FILE)
    try:
        data = st.read_bytes(file_url, storage)
    except StorageError as err:
        raise CheckpointError(f"cannot read encoder: {err}") from err
    encoder, meta = encoder_from_bytes(data, st.redact(file_url))
    return encoder, meta  # type: ignore[return-value]


def read_metrics(url: str, storage: StorageConfig | None = None) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file (one JSON object per epoch); empty if it does not exist."""
    if not st.exists(url, storage):
        return []
    text = st.read_bytes(url, storage).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def append_metrics(url: str, row: Mapping[str, Any], storage: StorageConfig | None = None) -> None:
    """Add one epoch's metrics to ``metrics.jsonl``, replacing rows of that epoch or later.

    A re-run epoch (after a failure or a resume) therefore appears once. The file is
    rewritten whole, which also works on object storage (no appends there).

    Parameters
    ----------
    url : str
        The metrics file URL.
    row : mapping
        JSON-serialisable metrics with an integer ``epoch``.
    storage : StorageConfig, optional
        Storage settings.
    """
    rows = [r for r in read_metrics(url, storage) if r.get("epoch", -1) < row["epoch"]]
    rows.append(dict(row))
    text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows)
    st.write_bytes(url, text.encode(), storage)
