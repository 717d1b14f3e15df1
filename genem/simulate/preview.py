"""The dataset's preview image: one micrograph with its particles circled."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genem.io.atomic import atomic_path
from genem.io.dataset import PREVIEW_PNG
from genem.io.mrc import read_mrc


def write_preview(root: Path, mic_name: str, part_rows: list, box_px: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img, _ = read_mrc(root / mic_name)
    f = max(1, int(np.ceil(max(img.shape) / 1024)))
    small = img[: img.shape[0] // f * f, : img.shape[1] // f * f].reshape(img.shape[0] // f, f, img.shape[1] // f, f).mean((1, 3))
    lo, hi = np.percentile(small, [1, 99])
    fig, ax = plt.subplots(figsize=(8, 8 * small.shape[0] / small.shape[1]), dpi=100)
    ax.imshow(small, cmap="gray", vmin=lo, vmax=hi)
    for r in part_rows:
        ax.add_patch(plt.Circle((r["rlnCoordinateX"] / f, r["rlnCoordinateY"] / f), box_px / 2 / f, fill=False,
                                color="#ffbf00", lw=0.8))
    ax.set_title(f"{mic_name}: {len(part_rows)} particles (ground truth)")
    ax.axis("off")
    out = root / PREVIEW_PNG
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return out
