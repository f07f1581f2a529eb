"""Posterior summaries for a whole batch of galaxies at once, in torch on the model's device.

For every target the posterior catalogue carries the mean, median, standard deviation, the
5/16/84/95 % quantiles and the MAP (contract.md). The merger targets are summarised over
the *merger samples* only: the samples whose lookback time and merger mass both lie inside
their valid ranges (:data:`ergo_ray.models.targets.VALID_RANGES`); the fraction of the
other samples is ``p_no_major_merger``. A summary is NaN when no sample qualifies.

MAP (method.md §5): a Gaussian KDE with Silverman's bandwidth (as
``scipy.stats.gaussian_kde(bw_method="silverman")``) evaluated on a ``grid``-point grid
spanning [min, max] of the galaxy's valid samples and normalised to a peak of 1; peaks as
``scipy.signal.find_peaks(height=0.05, distance=32)``; prominences as
``scipy.signal.peak_prominences``; peaks with prominence > 0.02 are kept unless that removes
all of them, and the MAP is the most prominent peak. Like ``find_peaks``, the first and
last grid points are never peaks; when a density has no interior peak (a mode at the edge
of the sample range) the MAP is the grid maximum.

The batched KDE bins the samples linearly onto the grid and convolves each row with its own
Gaussian kernel by FFT, which matches the exact KDE to a small fraction of a grid step (the
kernel is tens of grid steps wide at 400 samples). Peaks are strict local maxima (exactly
flat plateaus, which ``find_peaks`` resolves to their middle, do not occur in float64
densities of continuous samples). :func:`map_reference` is the per-galaxy scipy version
used to check it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ergo_ray.io.schemas import SUMMARY_STATS, posterior_summary_columns
from ergo_ray.models.targets import merger_mask
from ergo_ray.types import TARGETS

__all__ = [
    "PEAK_DISTANCE",
    "PEAK_HEIGHT",
    "PEAK_PROMINENCE",
    "kde_map",
    "map_reference",
    "summarize",
]

#: Minimum peak height relative to the highest point of the KDE.
PEAK_HEIGHT = 0.05
#: Minimum distance between peaks, in grid points.
PEAK_DISTANCE = 32
#: Minimum prominence of a kept peak (unless no peak reaches it).
PEAK_PROMINENCE = 0.02

#: exp(x) is a subnormal float64 (or 0) below this.
_EXP_MIN = -708.0

_QUANTILES = {"p05": 0.05, "p16": 0.16, "median": 0.5, "p84": 0.84, "p95": 0.95}


def _device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def summarize(
    samples: np.ndarray | torch.Tensor,
    *,
    grid: int = 512,
    device: str | torch.device | None = None,
    chunk: int = 1024,
) -> dict[str, np.ndarray]:
    """Summaries of posterior samples for a batch of galaxies.

    Parameters
    ----------
    samples : numpy.ndarray or torch.Tensor
        (N, S, 3) physical samples in :data:`~ergo_ray.types.TARGETS` order, as returned by
        ``ModelBundle.sample_posterior`` (no-merger samples keep their out-of-range values).
    grid : int
        Number of KDE grid points (method: 512).
    device : str or torch.device, optional
        Where to compute (default: CUDA if available).
    chunk : int
        Galaxies per KDE block (bounds the memory of the peak search).

    Returns
    -------
    dict of str to numpy.ndarray
        float64 (N,) arrays keyed by the posterior catalogue's columns
        (:func:`~ergo_ray.io.schemas.posterior_summary_columns`).
    """
    dev = _device(device)
    if isinstance(samples, np.ndarray):
        samples = np.require(
            samples, requirements=["W"]
        )  # torch refuses read-only views
    x = torch.as_tensor(samples).to(dev, torch.float64)
    if x.ndim != 3 or x.shape[2] != len(TARGETS):
        msg = f"samples must have shape (N, S, {len(TARGETS)}), got {tuple(x.shape)}"
        raise ValueError(msg)
    finite = torch.isfinite(x)
    merger = merger_mask(x) & finite[..., 1] & finite[..., 2]
    out: dict[str, np.ndarray] = {}
    for t, name in enumerate(TARGETS):
        mask = finite[..., 0] if t == 0 else merger
        stats = _masked_stats(x[..., t], mask, grid=grid, chunk=chunk)
        for s in SUMMARY_STATS:
            out[f"{name}_{s}"] = stats[s]
    n = x.shape[1]
    p_nmm = (
        1.0 - merger.sum(dim=1).double() / n
        if n
        else torch.full((x.shape[0],), math.nan)
    )
    out["p_no_major_merger"] = p_nmm.cpu().numpy()
    return {c: out[c] for c in posterior_summary_columns()}


def _masked_stats(
    v: torch.Tensor, mask: torch.Tensor, *, grid: int, chunk: int
) -> dict[str, np.ndarray]:
    """Moments, quantiles and MAP of each row's masked values."""
    n = mask.sum(dim=1)
    nf = n.double()
    has = n > 0
    vm = torch.where(mask, v, torch.zeros_like(v))
    mean = vm.sum(dim=1) / nf.clamp(min=1)
    dev = torch.where(mask, v - mean[:, None], torch.zeros_like(v))
    var = (dev**2).sum(dim=1) / nf.clamp(min=1)
    std = var.sqrt()
    srt = _sort_rows(torch.where(mask, v, torch.full_like(v, math.inf)))
    res: dict[str, torch.Tensor] = {"mean": mean, "std": std}
    for key, q in _QUANTILES.items():
        res[key] = _sorted_quantile(srt, n, q)
    res["map"] = kde_map(
        srt, n, std * torch.sqrt(nf / (nf - 1).clamp(min=1)), grid=grid, chunk=chunk
    )
    nan = torch.full_like(mean, math.nan)
    return {k: torch.where(has, val, nan).cpu().numpy() for k, val in res.items()}


def _sort_rows(v: torch.Tensor) -> torch.Tensor:
    """Return each row sorted ascending.

    On the CPU numpy sorts: its vectorised sort is many times faster than torch's there,
    and sorting is exact, so the values are the same.
    """
    if v.device.type == "cpu":
        return torch.from_numpy(np.sort(v.numpy(), axis=1))
    return torch.sort(v, dim=1).values


def _sorted_quantile(srt: torch.Tensor, n: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolation quantile (numpy's default) of the first ``n`` sorted values."""
    pos = q * (n.double() - 1).clamp(min=0)
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, (n - 1).clamp(min=0))
    frac = pos - lo.double()
    a = srt.gather(1, lo[:, None]).squeeze(1)
    b = srt.gather(1, hi[:, None]).squeeze(1)
    out = a + frac * (b - a)
    return torch.where(torch.isfinite(out), out, torch.full_like(out, math.nan))


def kde_map(
    sorted_values: torch.Tensor,
    n: torch.Tensor,
    std1: torch.Tensor,
    *,
    grid: int = 512,
    chunk: int = 1024,
) -> torch.Tensor:
    """Batched KDE MAP of each row's first ``n`` sorted values.

    Parameters
    ----------
    sorted_values : torch.Tensor
        (B, S) float64 values sorted ascending per row; entries past ``n`` are ignored.
    n : torch.Tensor
        (B,) number of valid values per row.
    std1 : torch.Tensor
        (B,) sample standard deviation (ddof 1) of the valid values.
    grid : int
        Grid points.
    chunk : int
        Rows per block.

    Returns
    -------
    torch.Tensor
        (B,) MAP estimates (NaN for rows without valid values).
    """
    out = torch.empty(
        sorted_values.shape[0], dtype=torch.float64, device=sorted_values.device
    )
    for start in range(0, sorted_values.shape[0], chunk):
        sl = slice(start, start + chunk)
        out[sl] = _kde_map_block(sorted_values[sl], n[sl], std1[sl], grid)
    return out


def _kde_map_block(
    srt: torch.Tensor, n: torch.Tensor, std1: torch.Tensor, grid: int
) -> torch.Tensor:
    b, s = srt.shape
    dev = srt.device
    nn = n.clamp(min=1)
    lo = srt[:, 0]
    hi = srt.gather(1, (nn - 1)[:, None]).squeeze(1)
    span = hi - lo
    bw = std1 * (0.75 * n.double().clamp(min=1)) ** -0.2
    ok = (n >= 2) & torch.isfinite(span) & (span > 0) & (bw > 0)
    step = torch.where(ok, span / (grid - 1), torch.ones_like(span))
    lo_safe = torch.where(ok, lo, torch.zeros_like(lo))

    # Linear binning of the valid samples onto the grid.
    valid = torch.arange(s, device=dev)[None, :] < n[:, None]
    t = torch.where(
        valid & ok[:, None],
        (srt - lo_safe[:, None]) / step[:, None],
        torch.zeros_like(srt),
    )
    i0 = t.floor().clamp(0, grid - 2)
    w = (t - i0).clamp(0, 1)
    wv = valid.double()
    hist = torch.zeros(b, grid, dtype=torch.float64, device=dev)
    hist.scatter_add_(1, i0.long(), (1 - w) * wv)
    hist.scatter_add_(1, i0.long() + 1, w * wv)

    h_grid = torch.where(ok, bw / step, torch.ones_like(bw))
    dens = _gaussian_smooth(hist, h_grid)
    dens = dens / dens.amax(dim=1, keepdim=True).clamp(min=1e-300)

    pos = _most_prominent_peak(dens)
    est = lo_safe + pos.double() * step
    single = srt[:, 0]  # one valid value, or all equal: that value is the mode
    nan = torch.full_like(est, math.nan)
    return torch.where(ok, est, torch.where(n >= 1, single, nan))


def _gaussian_smooth(hist: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Convolve each row of ``hist`` with a Gaussian of ``h[row]`` grid steps (linear, FFT).

    The kernel's transform is analytic: the DFT of a sampled Gaussian is, by Poisson
    summation, a sum of shifted Gaussians, ``sum_q exp(-2 pi^2 h^2 (f + q)^2)``; enough alias
    terms are kept for the narrowest row. The FFT length leaves at least ten kernel widths of
    zero padding, so the circular convolution equals the linear one on the grid; rows are
    grouped by the length they need, so that one wide kernel does not lengthen every row's.
    """
    b, g = hist.shape
    if not b:
        return hist.clone()
    need = (g + torch.clamp(10.0 * h, min=2.0)).log2().ceil().long()
    levels = torch.unique(need)
    if levels.numel() == 1:
        return _smooth_rows(hist, h, 1 << int(levels[0]))
    out = torch.empty_like(hist)
    for level in levels.tolist():
        rows = torch.nonzero(need == level).squeeze(1)
        out[rows] = _smooth_rows(hist[rows], h[rows], 1 << int(level))
    return out


def _smooth_rows(hist: torch.Tensor, h: torch.Tensor, length: int) -> torch.Tensor:
    """:func:`_gaussian_smooth` of rows that share the FFT length ``length``."""
    g = hist.shape[1]
    a = (2 * math.pi**2) * h[:, None] ** 2
    # The kernel's transform is set to 0 where it falls below float64's normal range: the
    # frequencies where it does so for every row are left out of the product (irfft pads
    # them with zeros), and no subnormal number reaches exp or the inverse FFT, whose
    # arithmetic on them is tens of times slower (they are ~1e-308 of the largest term).
    n_freq = length // 2 + 1
    a_min = float(a.min())
    if a_min > 0:
        n_freq = min(n_freq, math.ceil(length * math.sqrt(-_EXP_MIN / a_min)) + 1)
    freq = torch.arange(n_freq, device=hist.device, dtype=hist.dtype) / length
    h_min = max(float(h.min()), 1e-3)
    n_alias = min(64, math.ceil(math.sqrt(40.0 / (2 * math.pi**2)) / h_min) + 1)
    kf = _exp_normal(-a * freq[None, :] ** 2)
    for q in range(1, n_alias + 1):
        # Alias terms matter only for narrow kernels (a few rows, if any).
        rows = torch.nonzero(a[:, 0] * (q - 0.5) ** 2 < 40.0).squeeze(1)
        if not rows.numel():
            break
        ar = a[rows]
        kf[rows] += _exp_normal(-ar * (freq[None, :] + q) ** 2)
        kf[rows] += _exp_normal(-ar * (freq[None, :] - q) ** 2)
    spec = torch.fft.rfft(hist, length)[:, :n_freq] * kf
    return torch.fft.irfft(spec, length)[:, :g]


def _exp_normal(x: torch.Tensor) -> torch.Tensor:
    """``exp(x)``, and 0 where that is below float64's normal range (x < -708)."""
    return torch.exp(x.clamp(min=_EXP_MIN)).masked_fill_(x < _EXP_MIN, 0.0)


def _most_prominent_peak(d: torch.Tensor) -> torch.Tensor:
    """Grid index of the most prominent peak per row (find_peaks semantics), else argmax."""
    g = d.shape[1]
    cand = torch.zeros_like(d, dtype=torch.bool)
    cand[:, 1:-1] = (
        (d[:, 1:-1] > d[:, :-2]) & (d[:, 1:-1] > d[:, 2:]) & (d[:, 1:-1] >= PEAK_HEIGHT)
    )
    n_cand = cand.sum(dim=1)
    # No interior peak: the grid maximum; one peak: that peak. Only rows with several
    # candidates need the distance filter and the prominences.
    out = torch.where(n_cand > 0, cand.to(torch.uint8).argmax(dim=1), d.argmax(dim=1))
    multi = torch.nonzero(n_cand > 1).squeeze(1)
    if multi.numel():
        out[multi] = _select_peak(d[multi], cand[multi], g)
    return out


def _select_peak(d: torch.Tensor, cand: torch.Tensor, g: int) -> torch.Tensor:
    """Distance filter, then the most prominent survivor, for rows with >= 2 candidates."""
    b = d.shape[0]
    idx = torch.arange(g, device=d.device)
    # The candidates' positions, ascending, as a (b, c) table padded with g.
    r, col = torch.nonzero(cand, as_tuple=True)
    c = int(cand.sum(dim=1).max().item())
    pos = torch.full((b, c), g, dtype=torch.long, device=d.device)
    pos[r, cand.cumsum(dim=1)[r, col] - 1] = col
    cands = pos < g
    posc = pos.clamp(max=g - 1)
    neg = torch.tensor(-math.inf, dtype=d.dtype, device=d.device)
    # Greedily keep the highest remaining candidate and drop those closer than
    # PEAK_DISTANCE (scipy's _select_by_peak_distance); the loop runs over peak ranks.
    height = torch.where(cands, d.gather(1, posc), neg)
    has = torch.zeros_like(cands)
    avail = cands.clone()
    rows = torch.arange(b, device=d.device)
    for _ in range(c):
        best_val, best = torch.where(avail, height, neg).max(dim=1)
        live = torch.isfinite(best_val)
        if not live.any():
            break
        has[rows[live], best[live]] = True
        near = (pos - pos.gather(1, best[:, None])).abs() < PEAK_DISTANCE
        avail &= ~(near & live[:, None])
    hv = d.gather(1, posc)  # (b, p)
    # Prominence (scipy.signal.peak_prominences, no window): from each peak, walk to the
    # nearest strictly higher point on each side; the base is the higher of the two minima.
    higher = d[:, None, :] > hv[:, :, None]  # (b, p, g)
    j = idx[None, None, :]
    pj = posc[:, :, None]
    left_stop = torch.where(higher & (j < pj), j, torch.full_like(j, -1)).amax(dim=2)
    right_stop = torch.where(higher & (j > pj), j, torch.full_like(j, g)).amin(dim=2)
    dd = d[:, None, :]
    inf = torch.tensor(math.inf, dtype=d.dtype, device=d.device)
    left_min = torch.where((j > left_stop[:, :, None]) & (j <= pj), dd, inf).amin(dim=2)
    right_min = torch.where((j >= pj) & (j < right_stop[:, :, None]), dd, inf).amin(
        dim=2
    )
    prom = torch.where(has, hv - torch.maximum(left_min, right_min), -inf)
    # Keep prominence > PEAK_PROMINENCE unless none passes; the argmax is the same either way.
    strong = prom > PEAK_PROMINENCE
    prom = torch.where(strong.any(dim=1, keepdim=True) & ~strong, -inf, prom)
    return posc.gather(1, prom.argmax(dim=1)[:, None]).squeeze(1)


def map_reference(values: np.ndarray, grid: int = 512) -> float:
    """Per-galaxy MAP with scipy (``gaussian_kde`` + ``find_peaks``): the slow reference.

    Parameters
    ----------
    values : numpy.ndarray
        (S,) valid samples of one target of one galaxy.
    grid : int
        Grid points.

    Returns
    -------
    float
        The most prominent KDE peak, the grid maximum when there is no interior peak, the
        value itself for a single or constant sample, NaN when empty.
    """
    from scipy.signal import find_peaks, peak_prominences
    from scipy.stats import gaussian_kde

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan
    if v.size < 2 or v.max() == v.min():
        return float(v.min())
    xs = np.linspace(v.min(), v.max(), grid)
    dens = gaussian_kde(v, bw_method="silverman")(xs)
    dens = dens / dens.max()
    peaks, _ = find_peaks(dens, height=PEAK_HEIGHT, distance=PEAK_DISTANCE)
    if peaks.size == 0:
        return float(xs[np.argmax(dens)])
    prom = peak_prominences(dens, peaks)[0]
    strong = prom > PEAK_PROMINENCE
    if strong.any():
        peaks, prom = peaks[strong], prom[strong]
    return float(xs[peaks[np.argmax(prom)]])
