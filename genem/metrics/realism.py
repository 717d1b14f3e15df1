"""How real do synthetic micrographs look? Three offline measures between tiles of real and synthetic micrographs.

- ``raps_distance``: mean absolute difference of log10 radially averaged power spectra (tiles normalised to
  zero mean and unit variance, Hann-windowed), over all frequencies from the first ring to Nyquist.
- ``histogram_distance``: 1-Wasserstein distance between intensity histograms (in units of the micrograph's
  standard deviation) at full resolution and after 4x binning, averaged; binning exposes low-frequency
  texture (ice, particle crowding) that per-pixel noise hides.
- ``c2st_accuracy``: classifier two-sample test: a small CNN trained to tell real tiles from synthetic ones;
  its accuracy on held-out tiles (0.5 = indistinguishable, 1.0 = always told apart).

No downloaded weights: everything is computed from the data given, seeded.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from genem.ops import normalize_image_2d, radial_power_spectrum_2d
from genem.progress import ProgressCallback, report

HIST_RANGE = (-6.0, 6.0)
HIST_BINS = 240


def normalize_tiles(tiles: np.ndarray) -> np.ndarray:
    """Each tile (..., H, W) to zero mean, unit standard deviation (float32; statistics in float64)."""
    return normalize_image_2d(np.asarray(tiles, np.float64))[0].astype(np.float32)


def compute_raps_2d(images: np.ndarray, *, window: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum (:func:`genem.ops.radial_power_spectrum_2d`) of square images (..., N, N),
    mean-subtracted and, with ``window``, multiplied by a 2D Hann window first.

    Returns ``(frequency cycles/pixel (N//2,), raps (..., N//2))``; ring k holds |F|^2 / N^2 at radius in
    [k-0.5, k+0.5) (k = 0 is DC).
    """
    x = np.asarray(images, np.float64)
    n = x.shape[-1]
    if x.shape[-2] != n:
        raise ValueError("compute_raps_2d needs square images")
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    if window:
        w1 = np.hanning(n)
        x = x * np.outer(w1, w1)
    return np.arange(n // 2) / n, radial_power_spectrum_2d(x)[..., :n // 2]


def mean_log_raps(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequency, mean over tiles of the RAPS, in log10) for normalised tiles (n, N, N)."""
    freq, raps = compute_raps_2d(normalize_tiles(tiles))
    return freq, np.log10(raps.mean(axis=0) + 1e-12)


def raps_distance(real_tiles: np.ndarray, synthetic_tiles: np.ndarray) -> float:
    """Mean |log10 RAPS_real - log10 RAPS_synthetic| over rings 1..N/2-1 (decades; 0 = identical spectra)."""
    _, a = mean_log_raps(real_tiles)
    _, b = mean_log_raps(synthetic_tiles)
    return float(np.mean(np.abs(a[1:] - b[1:])))


def _bin_tiles(tiles: np.ndarray, factor: int) -> np.ndarray:
    n = tiles.shape[-1] // factor * factor
    t = tiles[..., :n, :n]
    return t.reshape(t.shape[:-2] + (n // factor, factor, n // factor, factor)).mean(axis=(-3, -1))


def intensity_histogram(values: np.ndarray) -> np.ndarray:
    """Normalised histogram over HIST_RANGE (values beyond it land in the edge bins)."""
    v = np.clip(np.asarray(values, np.float64).ravel(), HIST_RANGE[0], HIST_RANGE[1] - 1e-9)
    h, _ = np.histogram(v, bins=HIST_BINS, range=HIST_RANGE)
    return h / max(h.sum(), 1)


def wasserstein1_histograms(h1: np.ndarray, h2: np.ndarray) -> float:
    """1-Wasserstein distance between two histograms on the HIST_RANGE grid (same units as the values)."""
    width = (HIST_RANGE[1] - HIST_RANGE[0]) / HIST_BINS
    return float(np.abs(np.cumsum(h1) - np.cumsum(h2)).sum() * width)


def histogram_distance(real_tiles: np.ndarray, synthetic_tiles: np.ndarray, binnings=(1, 4)) -> float:
    """Mean over ``binnings`` of W1 between intensity histograms of the (re-standardised) binned tiles.

    Tiles keep their micrograph-level normalisation (zero mean, unit variance per micrograph); each binned set is
    standardised by its own global mean and std, so the distance compares shapes of distributions.
    """
    out = []
    for b in binnings:
        a = _bin_tiles(np.asarray(real_tiles, np.float32), b)
        s = _bin_tiles(np.asarray(synthetic_tiles, np.float32), b)
        a = (a - a.mean()) / max(a.std(), 1e-12)
        s = (s - s.mean()) / max(s.std(), 1e-12)
        out.append(wasserstein1_histograms(intensity_histogram(a), intensity_histogram(s)))
    return float(np.mean(out))


def tile_features(tiles: np.ndarray, n_bands: int = 8) -> np.ndarray:
    """Per-tile summary features (n, n_bands + 4): log10 power of the normalised tile in ``n_bands`` log-spaced
    frequency bands, the standard deviation after 2x and 4x binning, skewness and excess kurtosis."""
    t = normalize_tiles(tiles).astype(np.float64)
    freq, raps = compute_raps_2d(t)
    edges = np.geomspace(freq[1], freq[-1] + 1e-9, n_bands + 1)
    band = np.clip(np.searchsorted(edges, freq[1:], side="right") - 1, 0, n_bands - 1)
    counts = np.maximum(np.bincount(band, minlength=n_bands), 1)
    power = np.stack([np.bincount(band, r[1:], minlength=n_bands) for r in raps]) / counts
    b2, b4 = _bin_tiles(t, 2), _bin_tiles(t, 4)
    flat = t.reshape(len(t), -1)
    skew = (flat ** 3).mean(axis=1)
    kurt = (flat ** 4).mean(axis=1) - 3.0
    return np.column_stack([np.log10(power + 1e-12), b2.std(axis=(1, 2)), b4.std(axis=(1, 2)), skew, kurt])


def feature_c2st_accuracy(real_tiles: np.ndarray, synthetic_tiles: np.ndarray, *, seed: int = 0,
                          l2: float = 1e-2) -> float:
    """A cheap classifier two-sample test: L2-regularised logistic regression on :func:`tile_features`, two-fold
    cross-validated on a balanced, seeded split; mean held-out accuracy (0.5 = indistinguishable). Milliseconds:
    the validation score during translator training uses it."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    n = min(len(real_tiles), len(synthetic_tiles))
    if n < 4:
        raise ValueError(f"feature_c2st needs at least 4 tiles per class, got {n}")
    x = np.concatenate([tile_features(np.asarray(real_tiles)[rng.permutation(len(real_tiles))[:n]]),
                        tile_features(np.asarray(synthetic_tiles)[rng.permutation(len(synthetic_tiles))[:n]])])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    folds = np.concatenate([rng.permutation(n) % 2, rng.permutation(n) % 2])
    acc = []
    for k in (0, 1):
        tr, te = folds != k, folds == k
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-9
        a, b = (x[tr] - mu) / sd, (x[te] - mu) / sd
        a1 = np.column_stack([a, np.ones(len(a))])

        def loss(w, a1=a1, yt=y[tr]):
            z = a1 @ w
            p = 1 / (1 + np.exp(-z))
            return (np.logaddexp(0, z) - yt * z).mean() + l2 * (w[:-1] ** 2).sum(), \
                a1.T @ (p - yt) / len(yt) + 2 * l2 * np.append(w[:-1], 0.0)

        w = minimize(loss, np.zeros(a1.shape[1]), jac=True, method="L-BFGS-B").x
        acc.append(float((((np.column_stack([b, np.ones(len(b))]) @ w) > 0) == y[te]).mean()))
    return float(np.mean(acc))


class TileClassifier(nn.Module):
    """Small CNN: real (1) vs synthetic (0) for one tile."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 5, stride=2, padding=2), nn.ReLU(True),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(True),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.ReLU(True),
            nn.Conv2d(4 * w, 4 * w, 3, stride=2, padding=1), nn.ReLU(True))
        self.fc = nn.Linear(8 * w, 1)

    def forward(self, x):
        h = self.net(x)
        feats = torch.cat([h.mean(dim=(2, 3)), h.std(dim=(2, 3))], dim=1)
        return self.fc(feats)[:, 0]


def c2st_accuracy(real_tiles: np.ndarray, synthetic_tiles: np.ndarray, *, seed: int = 0, epochs: int = 20,
                  test_fraction: float = 0.3, batch_size: int = 32, lr: float = 1e-3, width: int = 16,
                  max_tiles_per_class: int | None = 2000, progress: ProgressCallback | None = None,
                  task: str = "c2st") -> dict:
    """Classifier two-sample test. Equal numbers of real and synthetic tiles (the larger set is subsampled),
    each tile normalised; a seeded split into train / held-out; a small CNN trained with flips and 90-degree
    rotations; returns ``{"accuracy": held-out accuracy, "n_train": ..., "n_test": ...}``. ``progress`` hears
    each epoch as ``task``.
    """
    rng = np.random.default_rng(seed)
    n = min(len(real_tiles), len(synthetic_tiles))
    if max_tiles_per_class:
        n = min(n, int(max_tiles_per_class))
    if n < 4:
        raise ValueError(f"c2st needs at least 4 tiles per class, got {n}")
    r = normalize_tiles(np.asarray(real_tiles)[rng.permutation(len(real_tiles))[:n]])
    s = normalize_tiles(np.asarray(synthetic_tiles)[rng.permutation(len(synthetic_tiles))[:n]])
    n_test = max(1, int(round(n * test_fraction)))
    x_tr = np.concatenate([r[n_test:], s[n_test:]])
    y_tr = np.concatenate([np.ones(n - n_test), np.zeros(n - n_test)]).astype(np.float32)
    x_te = np.concatenate([r[:n_test], s[:n_test]])
    y_te = np.concatenate([np.ones(n_test), np.zeros(n_test)]).astype(np.float32)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TileClassifier(width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = torch.from_numpy(x_tr)[:, None]
    yt = torch.from_numpy(y_tr)
    report(progress, task, 0, epochs, "epoch")
    for epoch in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            xb = _augment(xt[idx], g)
            loss = F.binary_cross_entropy_with_logits(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        report(progress, task, epoch + 1, epochs, "epoch")
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x_te[i:i + 256])[:, None]) for i in range(0, len(x_te), 256)])
    acc = float(((logits > 0).float().numpy() == y_te).mean())
    return {"accuracy": acc, "n_train": int(len(x_tr)), "n_test": int(len(x_te))}


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    k = int(torch.randint(0, 4, (1,), generator=g))
    x = torch.rot90(x, k, dims=(2, 3))
    if int(torch.randint(0, 2, (1,), generator=g)):
        x = torch.flip(x, dims=(3,))
    return x


#: the stronger classifier: twice the width (four times the capacity) and three times the epochs of the default
STRONG_C2ST = {"width": 32, "epochs_factor": 3}
N_BANDS = 6


def band_spectra(real_tiles: np.ndarray, synthetic_tiles: np.ndarray, n_bands: int = N_BANDS,
                 pixel_size_A: float | None = None) -> list[dict]:
    """Per frequency band (log-spaced from the first ring to Nyquist): mean log10 power of real and synthetic
    tiles and their difference (decades; > 0: the synthetic set has more power there)."""
    f, a = mean_log_raps(real_tiles)
    _, b = mean_log_raps(synthetic_tiles)
    f, a, b = f[1:], a[1:], b[1:]
    edges = np.geomspace(f[0], f[-1] * (1 + 1e-9), n_bands + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (f >= lo) & (f < hi) if hi < edges[-1] else (f >= lo)
        row = {"cycles_per_px": [float(lo), float(hi)], "real_log10": float(a[sel].mean()),
               "synthetic_log10": float(b[sel].mean()), "difference_log10": float((b[sel] - a[sel]).mean())}
        if pixel_size_A:
            row["resolution_A"] = [float(pixel_size_A / hi), float(pixel_size_A / lo)]
        out.append(row)
    return out


def _spread(values: list[float]) -> dict:
    return {"accuracy": values, "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "max": float(np.max(values))}


def evaluate_realism(real_tiles: np.ndarray, synthetic: dict[str, np.ndarray], *, seed: int = 0,
                     c2st_epochs: int = 20, n_seeds: int = 1, strong: bool = True, pixel_size_A: float | None = None,
                     progress: ProgressCallback | None = None) -> dict:
    """All measures for each named synthetic tile set against the real tiles; ``progress`` hears the classifiers'
    epochs (task ``c2st NAME`` / ``c2st-strong NAME``).

    Per set: ``raps_distance_log10``, ``histogram_distance_w1``, ``c2st_accuracy`` (the default classifier,
    first seed), ``c2st`` and, with ``strong``, ``c2st_strong`` (``STRONG_C2ST``: wider, trained longer): the
    accuracies over ``n_seeds`` seeds (``seed``, ``seed + 1``, ...; each seed also redraws the train / test
    split) with mean, sd and max; ``bands``: per-band spectra (:func:`band_spectra`)."""
    seeds = [seed + k for k in range(max(1, n_seeds))]
    out = {"n_real_tiles": int(len(real_tiles)), "tile_px": int(real_tiles.shape[-1]), "seeds": seeds,
           "strong_c2st": {"width": STRONG_C2ST["width"], "epochs": c2st_epochs * STRONG_C2ST["epochs_factor"]}
           if strong else None, "synthetic": {}}
    for name, tiles in synthetic.items():
        runs = [c2st_accuracy(real_tiles, tiles, seed=s, epochs=c2st_epochs, progress=progress,
                              task=f"c2st {name}") for s in seeds]
        row = {
            "n_tiles": int(len(tiles)),
            "raps_distance_log10": raps_distance(real_tiles, tiles),
            "histogram_distance_w1": histogram_distance(real_tiles, tiles),
            "c2st_accuracy": runs[0]["accuracy"],
            "c2st_n_test": runs[0]["n_test"],
            "c2st": _spread([r["accuracy"] for r in runs]),
        }
        if strong:
            row["c2st_strong"] = _spread([c2st_accuracy(
                real_tiles, tiles, seed=s, epochs=c2st_epochs * STRONG_C2ST["epochs_factor"],
                width=STRONG_C2ST["width"], progress=progress, task=f"c2st-strong {name}")["accuracy"] for s in seeds])
        row["bands"] = band_spectra(real_tiles, tiles, pixel_size_A=pixel_size_A)
        out["synthetic"][name] = row
    return out


def plot_raps(path, real_tiles: np.ndarray, synthetic: dict[str, np.ndarray], pixel_size_A: float | None = None):
    """Write a PNG: the mean log power spectra (real and each synthetic set) and, below, each set's per-band
    difference from real (:func:`band_spectra`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genem.io import atomic_path

    fig, (ax, bx) = plt.subplots(2, 1, figsize=(6, 6.4), gridspec_kw={"height_ratios": [3, 2]})
    unit = "1/A" if pixel_size_A else "cycles/pixel"
    for name, tiles, style in [("real", real_tiles, "k-")] + [(k, v, "-") for k, v in synthetic.items()]:
        f, lr = mean_log_raps(tiles)
        x = f[1:] / pixel_size_A if pixel_size_A else f[1:]
        ax.plot(x, lr[1:], style, label=name, lw=1.2)
    width = 0.8 / max(len(synthetic), 1)
    for k, (name, tiles) in enumerate(synthetic.items()):
        bands = band_spectra(real_tiles, tiles)
        bx.bar(np.arange(len(bands)) + (k - (len(synthetic) - 1) / 2) * width,
               [b["difference_log10"] for b in bands], width, label=name)
    scale = 1 / pixel_size_A if pixel_size_A else 1.0
    bx.set_xticks(range(len(bands)), [f"{b['cycles_per_px'][0] * scale:.3g}-{b['cycles_per_px'][1] * scale:.3g}"
                                      for b in bands], fontsize=7)
    bx.axhline(0, color="k", lw=0.8)
    bx.set_xlabel(f"frequency band ({unit})")
    bx.set_ylabel("log10 power - real")
    ax.set_xlabel(f"spatial frequency ({unit})")
    ax.set_ylabel("log10 power (tiles normalised)")
    ax.legend()
    ax.grid(alpha=0.3)
    bx.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
