"""Representation-quality monitor: k-nearest-neighbour regression R².

After each NNCLR epoch the representations of a reference sample of the training split
predict catalogue quantities (``log_mstar``, ``true_exsitu_frac``, ``redshift``) of the
validation sample by the mean over the k nearest reference points; the coefficient of
determination R² of those predictions tells whether the representation has picked up the
physics. Truth is only used here, never in the training loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ergo_ray.shared.knn import knn_blocks

__all__ = ["knn_predict", "knn_r2", "r2_score"]


def r2_score(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``.

    Parameters
    ----------
    truth, prediction : numpy.ndarray
        (N,) values; NaN rows must already be removed.

    Returns
    -------
    float
        R² (1 is perfect, 0 is the mean predictor, negative is worse); NaN for fewer than
        two points or constant truth.
    """
    truth = np.asarray(truth, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if truth.size < 2:
        return float("nan")
    ss_tot = float(np.sum((truth - truth.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((truth - prediction) ** 2)) / ss_tot


def knn_predict(
    reference: torch.Tensor,
    values: torch.Tensor,
    query: torch.Tensor,
    k: int,
    *,
    block: int = 1024,
) -> torch.Tensor:
    """Mean of the values of the k nearest reference points (Euclidean) of each query.

    Parameters
    ----------
    reference : torch.Tensor
        (M, D) reference points.
    values : torch.Tensor
        (M,) values at the reference points.
    query : torch.Tensor
        (N, D) query points, on the same device.
    k : int
        Neighbours; capped at M.
    block : int
        Query rows per distance block (bounds memory to ``block × M``).

    Returns
    -------
    torch.Tensor
        (N,) float32 predictions.
    """
    k = min(k, reference.shape[0])
    out = torch.empty(query.shape[0], dtype=torch.float32, device=query.device)
    with torch.no_grad():
        for rows, _dist, idx in knn_blocks(query, reference, k, p=2.0, block=block):
            out[rows] = values[idx].float().mean(dim=1)
    return out


def knn_r2(
    reference: np.ndarray | torch.Tensor,
    reference_targets: Mapping[str, np.ndarray],
    query: np.ndarray | torch.Tensor,
    query_targets: Mapping[str, np.ndarray],
    *,
    k: int = 10,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """R² of a k-NN regression from representation to each target.

    Representations are standardised with the reference sample's mean and standard deviation
    per dimension, so that no dimension dominates the distance. For each target only rows
    with finite values take part, on both sides (observed domains have no truth).

    Parameters
    ----------
    reference : array-like
        (M, D) representations of the reference (training) sample.
    reference_targets : mapping of str to numpy.ndarray
        (M,) values per target name.
    query : array-like
        (N, D) representations of the validation sample.
    query_targets : mapping of str to numpy.ndarray
        (N,) values per target name (the same names).
    k : int
        Neighbours.
    device : str or torch.device
        Where to compute distances.

    Returns
    -------
    dict of str to float
        R² per target; NaN where fewer than ``k`` reference or two query rows are finite.
    """
    ref = torch.as_tensor(np.asarray(reference, np.float32) if not torch.is_tensor(reference)
                          else reference).to(device, torch.float32)
    qry = torch.as_tensor(np.asarray(query, np.float32) if not torch.is_tensor(query)
                          else query).to(device, torch.float32)
    mean = ref.mean(dim=0, keepdim=True)
    if ref.shape[0] > 1:
        std = ref.std(dim=0, keepdim=True).clamp_min(1e-6)
    else:
        std = torch.ones_like(mean)
    ref = (ref - mean) / std
    qry = (qry - mean) / std
    out: dict[str, float] = {}
    for name, ref_vals in reference_targets.items():
        rv = np.asarray(ref_vals, dtype=np.float64)
        qv = np.asarray(query_targets[name], dtype=np.float64)
        r_ok, q_ok = np.isfinite(rv), np.isfinite(qv)
        if r_ok.sum() < k or q_ok.sum() < 2:
            out[name] = float("nan")
            continue
        r_idx = torch.as_tensor(np.flatnonzero(r_ok), device=ref.device)
        q_idx = torch.as_tensor(np.flatnonzero(q_ok), device=qry.device)
        pred = knn_predict(ref[r_idx], torch.as_tensor(rv[r_ok], device=ref.device),
                           qry[q_idx], k)
        out[name] = r2_score(qv[q_ok], pred.cpu().numpy())
    return out
