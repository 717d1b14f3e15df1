"""Montage viewer for the GenEM protocols: the first particles of the output (and, for denoising, the input
above them), plus the first micrograph for simulations, as one PNG shown in Scipion's image viewer."""
import os

from pwem.viewers.views import ImageView
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from ..convert import strip_scipion_suffix
from ..protocols import ProtGenemDenoise, ProtGenemSimulate, ProtGenemTranslate


def _read_image(item):
    import mrcfile
    index, fn = item.getLocation()
    with mrcfile.mmap(strip_scipion_suffix(fn), permissive=True) as m:
        data = m.data
        img = data[(index or 1) - 1] if data.ndim == 3 else data
        return img.astype("float32")


def _normalize(img):
    import numpy as np
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / (hi - lo + 1e-12), 0, 1)


def write_montage(rows, out_png, columns=8, titles=None, micrograph=None):
    """Write a PNG: each entry of ``rows`` is a list of Scipion images drawn as one row (at most ``columns``);
    ``micrograph`` (an Image) is drawn above when given. Returns the PNG path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = len(rows) + (1 if micrograph is not None else 0)
    heights = ([columns / 2.0] if micrograph is not None else []) + [1.0] * len(rows)
    fig = plt.figure(figsize=(columns * 1.2, sum(heights) * 1.2 + 0.3))
    grid = fig.add_gridspec(n_rows, columns, height_ratios=heights, hspace=0.15, wspace=0.05)
    r0 = 0
    if micrograph is not None:
        ax = fig.add_subplot(grid[0, :])
        ax.imshow(_normalize(_read_image(micrograph)), cmap="gray")
        ax.set_title(os.path.basename(micrograph.getFileName()), fontsize=8)
        ax.axis("off")
        r0 = 1
    for r, items in enumerate(rows):
        for c, item in enumerate(items[:columns]):
            ax = fig.add_subplot(grid[r0 + r, c])
            ax.imshow(_normalize(_read_image(item)), cmap="gray")
            ax.axis("off")
            if c == 0 and titles:
                ax.set_title(titles[r], fontsize=7, loc="left")
    tmp = out_png + ".tmp.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, out_png)
    return out_png


def _first(items, n):
    out = []
    for item in items:
        out.append(item.clone())
        if len(out) == n:
            break
    return out


def protocol_montage(prot, columns=8):
    """The montage PNG of a finished GenEM protocol (written in its extra folder)."""
    out_png = prot._getExtraPath("montage.png")
    parts = getattr(prot, "outputParticles", None)
    if parts is None:
        raise ValueError("%s has no output particles yet" % prot.getRunName())
    if isinstance(prot, ProtGenemDenoise):
        ids = [p.getObjId() for p in _first(parts.iterItems(orderBy="id"), columns)]
        inp = prot.inputParticles.get()
        rows = [[inp[i].clone() for i in ids], [parts[i].clone() for i in ids]]
        return write_montage(rows, out_png, columns, titles=["input", "denoised"])
    mic = getattr(prot, "outputMicrographs", None)
    mic = mic.getFirstItem() if mic is not None else None
    return write_montage([_first(parts.iterItems(orderBy="id"), columns)], out_png, columns,
                         titles=["particles"], micrograph=mic)


class GenemMontageViewer(Viewer):
    """Shows a montage of a GenEM protocol's particles (input and output for denoising)."""
    _label = "genem montage"
    _targets = [ProtGenemSimulate, ProtGenemTranslate, ProtGenemDenoise]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        return [ImageView(protocol_montage(obj))]
