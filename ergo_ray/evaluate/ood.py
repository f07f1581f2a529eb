"""The out-of-domain score between sets of representations (method.md §7, Eisert+2024).

Recipe, for every ordered pair (A = query set, B = reference set):

1. standardise the features of all sets together (one scaler over every representation);
2. subsample A and B at random to the same size (seeded) so that density effects cancel;
3. for each x in A, ``s(x) = d_k(x, B) / d_k(x, A∖{x})`` with k = 8 and the L1 distance;
4. scale by the 95th percentile of A's self-scores: A split at random into halves A0 and
   A1, each x in A0 scored with A1 as the reference and A0∖{x} as its own set;
5. a scaled score above 1 marks a galaxy as out of domain. By construction about 5 % of a
   set's own galaxies score above 1.

"TNG100-HSC" (query TNG100, reference HSC) means TNG100 galaxies scored against HSC. The
k-th neighbour distances are exact (``ergo_ray.shared.knn``: blocked ``torch.cdist`` and
``topk`` on the model's device), not approximate.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ergo_ray.errors import InputError
from ergo_ray.shared.knn import kth_neighbour_distance

__all__ = [
    "OodResult",
    "fraction_table_markdown",
    "ood_scores",
    "pair_ranking",
    "score_pair",
    "self_scores",
    "standardise",
]

log = logging.getLogger("ergo_ray")


@dataclass
class OodResult:
    """OOD scores of every ordered pair of sets.

    Attributes
    ----------
    names : list of str
        Set names, in input order.
    scores : dict
        ``(query, reference)`` → scaled scores (float64, one per subsampled query galaxy).
        The diagonal ``(A, A)`` holds A's scaled self-scores.
    scales : dict
        Set name → the 95th percentile of its raw self-scores (the divisor).
    sizes : dict
        ``(query, reference)`` → subsample size used for that pair.
    params : dict
        ``k``, ``metric``, ``quantile``, ``max_per_set``, ``seed``.
    """

    names: list[str]
    scores: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    sizes: dict[tuple[str, str], int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def fraction_above(self, threshold: float = 1.0) -> dict[tuple[str, str], float]:
        """Fraction of scaled scores above ``threshold`` for every ordered pair."""
        return {pair: float(np.mean(s > threshold)) for pair, s in self.scores.items()}

    def to_json(self, threshold: float = 1.0) -> dict[str, Any]:
        """Summarise as JSON-ready data: fraction table, per-pair rows, scales, parameters.

        Parameters
        ----------
        threshold : float
            Score above which a galaxy counts as out of domain.

        Returns
        -------
        dict
            ``table`` (query → reference → fraction above threshold), ``pairs`` (list of
            rows with ``query``, ``reference``, ``label`` "QUERY-REFERENCE",
            ``fraction_above``, ``median_score``, ``n``), ``scales`` and ``params``.
        """
        frac = self.fraction_above(threshold)
        table = {a: {b: frac[(a, b)] for b in self.names if (a, b) in frac} for a in self.names}
        pairs = [
            {
                "query": a,
                "reference": b,
                "label": f"{a}-{b}",
                "fraction_above": frac[(a, b)],
                "median_score": float(np.median(self.scores[(a, b)])),
                "n": self.sizes[(a, b)],
            }
            for a in self.names
            for b in self.names
            if (a, b) in self.scores
        ]
        return {
            "threshold": threshold,
            "table": table,
            "pairs": pairs,
            "scales": dict(self.scales),
            "params": dict(self.params),
        }


def standardise(reps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Standardise every feature over all sets together (one StandardScaler).

    Parameters
    ----------
    reps : mapping of str to numpy.ndarray
        Set name → (N_i, D) representations.

    Returns
    -------
    dict of str to numpy.ndarray
        float32 standardised copies (features of zero variance are only centred).
    """
    allx = np.concatenate([np.asarray(v, dtype=np.float64) for v in reps.values()], axis=0)
    mean = allx.mean(axis=0)
    std = allx.std(axis=0)
    std[~(std > 0)] = 1.0
    return {k: ((np.asarray(v, dtype=np.float64) - mean) / std).astype(np.float32)
            for k, v in reps.items()}


def _rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if x.shape[0] <= n:
        return x[rng.permutation(x.shape[0])]
    return x[np.sort(rng.choice(x.shape[0], size=n, replace=False))]


def score_pair(
    query: np.ndarray,
    reference: np.ndarray,
    k: int = 8,
    metric: str = "l1",
    device: str | None = None,
) -> np.ndarray:
    """Raw (unscaled) scores ``d_k(x, reference) / d_k(x, query∖{x})`` for every x in query.

    Parameters
    ----------
    query : numpy.ndarray
        (N, D) query set A (already standardised and subsampled).
    reference : numpy.ndarray
        (M, D) reference set B.
    k : int
        Neighbour rank.
    metric : {"l1", "l2"}
        Distance.
    device : str, optional
        Torch device for the k-NN (default: CUDA if available).

    Returns
    -------
    numpy.ndarray
        float64 (N,) raw scores.
    """
    num = kth_neighbour_distance(query, reference, k, metric=metric, device=device)
    den = kth_neighbour_distance(query, query, k, metric=metric, exclude_self=True, device=device)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.asarray(num) / np.asarray(den)
    # Duplicated points give a zero denominator: treat them as perfectly in-domain.
    return np.where(np.isfinite(s), s, np.where(np.asarray(num) > 0, np.inf, 0.0))


def self_scores(
    x: np.ndarray,
    k: int = 8,
    metric: str = "l1",
    rng: np.random.Generator | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Raw A-A self-scores: A split at random into halves, A0 scored against A1.

    Parameters
    ----------
    x : numpy.ndarray
        (N, D) standardised representations of set A.
    k : int
        Neighbour rank.
    metric : {"l1", "l2"}
        Distance.
    rng : numpy.random.Generator, optional
        Source of the random split.
    device : str, optional
        Torch device for the k-NN.

    Returns
    -------
    numpy.ndarray
        float64 (N // 2,) raw self-scores.
    """
    rng = rng or np.random.default_rng(0)
    perm = rng.permutation(x.shape[0])
    half = x.shape[0] // 2
    a0, a1 = x[perm[:half]], x[perm[half : 2 * half]]
    return score_pair(a0, a1, k, metric, device)


def ood_scores(
    reps: Mapping[str, np.ndarray],
    k: int = 8,
    metric: str = "l1",
    quantile: float = 0.95,
    max_per_set: int = 20000,
    seed: int = 42,
    device: str | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> OodResult:
    """Scaled OOD scores for every ordered pair of sets.

    Parameters
    ----------
    reps : mapping of str to numpy.ndarray
        Set name → (N_i, D) raw representations (standardised here, all sets together).
    k : int
        Neighbour rank (paper: 8).
    metric : {"l1", "l2"}
        Distance (paper: L1).
    quantile : float
        Quantile of the self-scores that becomes 1 (paper: 0.95).
    max_per_set : int
        Cap on each subsample (equal-size subsamples of ``min(N_A, N_B, max_per_set)``).
    seed : int
        Seed of the subsampling and the half split; each pair draws from its own stream.
    device : str, optional
        Torch device for the k-NN.
    pairs : sequence of (str, str), optional
        Ordered pairs to score (default: every ordered pair, diagonal included).

    Returns
    -------
    OodResult
        Scores, scales and sizes.

    Raises
    ------
    InputError
        If a set has too few representations for k, or the dimensions differ.
    """
    names = list(reps)
    dims = {np.asarray(v).shape[1] if np.ndim(v) == 2 else -1 for v in reps.values()}
    if len(dims) != 1 or -1 in dims:
        shapes = {n: np.shape(v) for n, v in reps.items()}
        msg = f"representations must all be (N, D) with one D, got {shapes}"
        raise InputError(msg)
    min_n = 2 * (k + 1)
    for name, v in reps.items():
        if len(v) < min_n:
            msg = (f"set {name!r} has {len(v)} representations; the OOD score with k={k} "
                   f"needs ≥ {min_n}")
            raise InputError(msg, source=name)
    std = standardise(reps)
    result = OodResult(
        names=names,
        params={"k": k, "metric": metric, "quantile": quantile,
                "max_per_set": max_per_set, "seed": seed},
    )
    for name in names:
        x = _subsample(std[name], max_per_set, _rng(seed, name, "self"))
        raw = self_scores(x, k, metric, _rng(seed, name, "split"), device)
        scale = float(np.quantile(raw, quantile))
        result.scales[name] = scale if scale > 0 else 1.0
        result.scores[(name, name)] = raw / result.scales[name]
        result.sizes[(name, name)] = int(raw.size)
    todo = pairs if pairs is not None else [(a, b) for a in names for b in names if a != b]
    for a, b in todo:
        if a == b:
            continue
        n = min(len(std[a]), len(std[b]), max_per_set)
        rng = _rng(seed, a, b)
        qa, rb = _subsample(std[a], n, rng), _subsample(std[b], n, rng)
        raw = score_pair(qa, rb, k, metric, device)
        result.scores[(a, b)] = raw / result.scales[a]
        result.sizes[(a, b)] = n
        log.info("OOD %s-%s: %.1f%% above 1 (n=%d)", a, b,
                 100 * float(np.mean(result.scores[(a, b)] > 1)), n)
    return result


def fraction_table_markdown(result: OodResult, threshold: float = 1.0) -> str:
    """Format the fraction-above-threshold table as Markdown (rows query, columns reference).

    Parameters
    ----------
    result : OodResult
        Scores from :func:`ood_scores`.
    threshold : float
        OOD threshold.

    Returns
    -------
    str
        A Markdown table, percentages with one decimal.
    """
    frac = result.fraction_above(threshold)
    head = "| query \\ reference | " + " | ".join(result.names) + " |"
    sep = "|---|" + "---|" * len(result.names)
    rows = [head, sep]
    for a in result.names:
        cells = [f"{100 * frac[(a, b)]:.1f} %" if (a, b) in frac else "" for b in result.names]
        rows.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def pair_ranking(result: OodResult, observed: str, threshold: float = 1.0) -> list[dict[str, Any]]:
    """Rank the other sets by their distance to the observed set, closest first.

    Parameters
    ----------
    result : OodResult
        Scores from :func:`ood_scores`.
    observed : str
        Name of the observed set.
    threshold : float
        OOD threshold.

    Returns
    -------
    list of dict
        One row per other set: ``set``, ``observed_to_set`` (fraction of observed galaxies
        OOD w.r.t. the set), ``set_to_observed`` (the reverse), ``mean`` of the two and
        ``rank`` (1 = closest).

    Raises
    ------
    KeyError
        If ``observed`` is not one of the sets.
    """
    if observed not in result.names:
        msg = f"observed set {observed!r} is not among {result.names}"
        raise KeyError(msg)
    frac = result.fraction_above(threshold)
    rows = []
    for name in result.names:
        if name == observed:
            continue
        o2s = frac.get((observed, name), float("nan"))
        s2o = frac.get((name, observed), float("nan"))
        rows.append({"set": name, "observed_to_set": o2s, "set_to_observed": s2o,
                     "mean": float(np.nanmean([o2s, s2o]))})
    rows.sort(key=lambda r: r["mean"])
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows
