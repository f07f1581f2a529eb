"""Images into a bundle's encoder: raw cutouts prepared, prepared stamps encoded.

:class:`~ergo_ray.infer.bundle.ModelBundle` (``prepare``, ``represent``) and with it the
catalogue's model actor run their images through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ergo_ray.errors import BadObjectError, InputError

__all__ = ["as_prepared", "encode", "prepare_cutouts"]

#: The bundle's preprocessing settings that :func:`ergo_ray.preprocess.prepare_image` takes.
PREPARE_KEYS: tuple[str, ...] = (
    "crop_factor", "stretch", "central_box_px", "detect_nsigma", "min_area_px")


def prepare_cutouts(
    images: np.ndarray, size: int, preprocess: Mapping[str, Any]
) -> np.ndarray:
    """Raw float32 (N, 3, H, W) g, r, i cutouts → prepared uint8 (N, 3, S, S).

    Parameters
    ----------
    images : numpy.ndarray
        Raw cutouts.
    size : int
        Side S of the prepared stamps.
    preprocess : mapping
        The bundle's preprocessing settings (keys other than :data:`PREPARE_KEYS` ignored).

    Returns
    -------
    numpy.ndarray
        uint8 (N, 3, S, S), channels (i, r, g).

    Raises
    ------
    BadObjectError
        Naming the index of the first cutout that cannot be prepared.
    """
    from ergo_ray.io.cutout import Cutout
    from ergo_ray.preprocess import prepare_image

    kw = {k: preprocess[k] for k in PREPARE_KEYS if k in preprocess}
    out = np.empty((len(images), 3, size, size), np.uint8)
    for i, img in enumerate(images):
        try:
            out[i], _ = prepare_image(
                Cutout(np.asarray(img, np.float32), source=f"image {i}"), size=size, **kw)
        except BadObjectError as err:
            msg = f"image {i}: cannot be prepared: {err}"
            raise BadObjectError(msg, object_id=str(i), reason=err.reason) from err
    return out


def as_prepared(
    images: np.ndarray, size: int, preprocess: Mapping[str, Any]
) -> np.ndarray:
    """Return prepared uint8 stamps as they are, raw float cutouts prepared.

    Raises
    ------
    InputError
        If the images are not (N, 3, H, W), or prepared stamps are not S × S.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] != 3:
        msg = f"images must be (N, 3, H, W), got shape {arr.shape}"
        raise InputError(msg)
    if arr.dtype == np.uint8:
        if arr.shape[2:] != (size, size):
            msg = (f"prepared uint8 images must be (N, 3, {size}, {size}) for this bundle, "
                   f"got {arr.shape}")
            raise InputError(msg)
        return arr
    if arr.dtype.kind != "f":
        msg = f"images must be uint8 (prepared) or float (raw cutouts), got {arr.dtype}"
        raise InputError(msg)
    return prepare_cutouts(arr, size, preprocess)


def encode(
    encoder: torch.nn.Module,
    prepared: np.ndarray,
    rep_dim: int,
    device: torch.device,
    batch_size: int,
    amp: bool,
) -> np.ndarray:
    """Representations of prepared stamps, ``batch_size`` images per forward pass.

    On CUDA the stamps are copied from pinned host memory without blocking, in the
    channels-last layout, and ``amp`` runs the encoder under float16 autocast.

    Parameters
    ----------
    encoder : torch.nn.Module
        The bundle's encoder, on ``device``.
    prepared : numpy.ndarray
        uint8 (N, 3, S, S).
    rep_dim : int
        Length of the representation.
    device : torch.device
        Where the encoder runs.
    batch_size : int
        Images per forward pass.
    amp : bool
        Autocast to float16 (CUDA only).

    Returns
    -------
    numpy.ndarray
        float32 (N, rep_dim).
    """
    cuda = device.type == "cuda"
    out = np.empty((len(prepared), rep_dim), np.float32)
    with torch.inference_mode():
        for start in range(0, len(prepared), batch_size):
            batch = np.require(prepared[start : start + batch_size], requirements=["C", "W"])
            x = torch.from_numpy(batch)
            x = (x.pin_memory() if cuda else x).to(device, non_blocking=True)
            x = x.float().div_(255.0)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=cuda and amp):
                r = encoder(x)
            out[start : start + batch_size] = r.float().cpu().numpy()
    return out
