"""The encoder file format (``encoder.pt``): written by ``train-nnclr``, read everywhere.

``{"format": "ergo_ray.encoder", "version": 1, "state_dict", "meta": {"clr", "preprocess",
"in_size", "rep_dim", "epoch", "ergo_ray_version"}}``, saved with ``torch.save`` and loaded
with ``weights_only=True``. A model bundle stores the file unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from ergo_ray.errors import CheckpointError
from ergo_ray.io import storage as st
from ergo_ray.shared.bundle_format import load_torch

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = [
    "ENCODER_FILE",
    "ENCODER_FORMAT",
    "encoder_bytes",
    "encoder_from_bytes",
    "load_encoder_file",
]

#: File name of an exported encoder in a ``train-nnclr`` output and in a bundle.
ENCODER_FILE = "encoder.pt"
#: ``format`` of an exported encoder.
ENCODER_FORMAT = "ergo_ray.encoder"
_VERSION = 1


def encoder_bytes(
    encoder: torch.nn.Module,
    *,
    clr: Mapping[str, Any],
    preprocess: Mapping[str, Any],
    in_size: int,
    rep_dim: int,
    epoch: int | None = None,
) -> bytes:
    """Serialise a trained encoder as an ``encoder.pt`` file.

    Parameters
    ----------
    encoder : torch.nn.Module
        The encoder (:class:`ergo_ray.models.encoder.Encoder`), unwrapped from DDP.
    clr : mapping
        The ``clr`` config section (JSON form).
    preprocess : mapping
        The ``preprocess`` config section that produced the training stamps.
    in_size : int
        Stamp side in pixels.
    rep_dim : int
        Representation length.
    epoch : int, optional
        Last trained epoch (0-based).

    Returns
    -------
    bytes
        The file content.
    """
    from ergo_ray import __version__

    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    meta = {"clr": json.loads(json.dumps(dict(clr))),
            "preprocess": json.loads(json.dumps(dict(preprocess))),
            "in_size": int(in_size), "rep_dim": int(rep_dim),
            "epoch": -1 if epoch is None else int(epoch), "ergo_ray_version": __version__}
    buf = io.BytesIO()
    torch.save({"format": ENCODER_FORMAT, "version": _VERSION, "state_dict": state,
                "meta": meta}, buf)
    return buf.getvalue()


def encoder_from_bytes(
    data: bytes, source: str
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild an encoder from an ``encoder.pt`` written by ``train-nnclr``.

    The one reader of the format (module docstring); :func:`encoder_bytes` writes it.

    Parameters
    ----------
    data : bytes
        File content.
    source : str
        Where it came from (for messages).

    Returns
    -------
    tuple of (torch.nn.Module, dict)
        The encoder on the CPU in eval mode, and its meta.

    Raises
    ------
    CheckpointError
        If the content is not an encoder file or the weights do not fit.
    """
    from ergo_ray.models.encoder import build_encoder

    obj = load_torch(data, source)
    if (
        not isinstance(obj, dict)
        or obj.get("format") != ENCODER_FORMAT
        or "state_dict" not in obj
        or "meta" not in obj
    ):
        msg = f"{source}: not an ergo_ray encoder file"
        raise CheckpointError(msg)
    meta = dict(obj["meta"])
    try:
        clr = meta["clr"]
        enc = build_encoder(
            clr["widths"], clr["blocks"], int(meta["rep_dim"]), int(meta["in_size"])
        )
        enc.load_state_dict(obj["state_dict"], strict=True)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        msg = (
            f"{source}: encoder weights do not match their recorded architecture: {err}"
        )
        raise CheckpointError(msg) from err
    return enc.eval(), meta


def load_encoder_file(
    url: str, storage: StorageConfig | None = None, sha256: str | None = None
) -> torch.nn.Module:
    """Load an ``encoder.pt`` (a ``train-nnclr`` output's or a bundle's), checking its digest.

    Parameters
    ----------
    url : str
        URL of the ``encoder.pt`` file.
    storage : StorageConfig, optional
        Storage settings.
    sha256 : str, optional
        Expected digest; a mismatch raises :class:`CheckpointError`.

    Returns
    -------
    torch.nn.Module
        The encoder on the CPU, in eval mode.
    """
    data = st.read_bytes(url, storage)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        msg = (
            f"{st.redact(url)}: sha256 does not match the expected digest; the file was "
            f"modified or corrupted"
        )
        raise CheckpointError(msg)
    return encoder_from_bytes(data, st.redact(url))[0]
