"""The dataset's preview image: one micrograph beside its clean twin, its particles circled at their size."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genem.io.atomic import atomic_path
from genem.io.dataset import PREVIEW_PNG, micrograph_name
from genem.io.mrc import read_mrc

#: the preview's micrographs are binned to at most this many pixels across
PREVIEW_MAX_PX = 1024


def _binned(img: np.ndarray, f: int) -> np.ndarray:
    h, w = img.shape[0] // f * f, img.shape[1] // f * f
    return img[:h, :w].reshape(h // f, f, w // f, f).mean((1, 3))


def write_preview(root: Path, stem: str, part_rows: list, radius_px: float) -> Path:
    """``preview.png``: micrograph ``stem`` (noisy) beside its clean twin, each particle circled with its radius
    ``radius_px`` (the structure's, not the box's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noisy, _ = read_mrc(root / micrograph_name(stem))
    clean, _ = read_mrc(root / micrograph_name(stem, "clean"))
    f = max(1, int(np.ceil(max(noisy.shape) / PREVIEW_MAX_PX)))
    panels = [(_binned(noisy, f), "noisy"), (_binned(clean, f), "clean twin (no noise)")]
    h, w = panels[0][0].shape
    fig, axes = plt.subplots(1, 2, figsize=(12, 6 * h / w + 0.6), dpi=100)
    for ax, (img, title) in zip(axes, panels):
        lo, hi = np.percentile(img, [1, 99])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
        for r in part_rows:
            ax.add_patch(plt.Circle((r["rlnCoordinateX"] / f, r["rlnCoordinateY"] / f), radius_px / f, fill=False,
                                    color="#ffbf00", lw=0.8))
        ax.set_title(f"{title}: {len(part_rows)} particles (ground truth)")
        ax.axis("off")
    fig.suptitle(micrograph_name(stem))
    out = root / PREVIEW_PNG
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return out
