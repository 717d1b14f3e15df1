"""Make docs/figures/simulate_overview.png: one simulated micrograph (noisy, clean, mask, ice) and a few particles.

    python docs/make_simulate_figure.py            (about a minute on 2 cores)
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from genem.io import GenemDataset
    from genem.simulate import SimulationConfig, run_simulation

    cfg = SimulationConfig(n_micrographs=1, micrograph_size_px=(1024, 1024), pixel_size_A=1.5, particle_box_px=128,
                           particles_per_micrograph=30, noise_mode="poisson", dose_e_per_A2=40.0, ice="random",
                           ice_thickness_nm=(40.0, 40.0), ice_thickness_sd_nm=8.0, ice_correlation_A=400.0,
                           defocus_A=15000.0, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        ds = GenemDataset.open(run_simulation(cfg, Path(tmp) / "sim"))
        name = ds.micrographs()["rlnMicrographName"][0]
        noisy, clean = ds.read_micrograph(name), ds.read_micrograph(name, "clean")
        mask, ice = ds.read_micrograph(name, "mask"), ds.read_micrograph(name, "ice")
        parts = ds.particles()
        rows = parts.iloc[:4]
        pn = ds.read_particle_images(rows)
        pc = ds.read_particle_images(rows, column="rlnGenemCleanImageName")

    def shrink(img, f=2):
        h, w = img.shape[0] // f * f, img.shape[1] // f * f
        return img[:h, :w].reshape(h // f, f, w // f, f).mean((1, 3))

    def show(ax, img, title, cmap="gray", robust=True, **kw):
        lo, hi = np.percentile(img, [1, 99]) if robust else (img.min(), img.max())
        im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, **kw)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        return im

    fig = plt.figure(figsize=(12, 6.2), dpi=72)
    gs = fig.add_gridspec(2, 6, height_ratios=[1, 1])
    show(fig.add_subplot(gs[0, 0:2]), shrink(noisy), "noisy micrograph (Poisson, 40 e/A^2)")
    show(fig.add_subplot(gs[0, 2:4]), shrink(clean), "clean twin (expected counts, no ice structure)")
    ax = fig.add_subplot(gs[0, 4:6])
    lab = np.ma.masked_equal(mask[::2, ::2].astype(float), 0)
    ax.imshow(np.zeros(lab.shape), cmap="gray")
    ax.imshow(lab % 20, cmap="tab20", interpolation="nearest")
    ax.set_title(f"mask (label k = particle k; {int(mask.max())} particles)", fontsize=9)
    ax.axis("off")
    ax = fig.add_subplot(gs[1, 0:2])
    im = show(ax, ice[::2, ::2], "ice thickness (nm)", cmap="viridis", robust=False)
    fig.colorbar(im, ax=ax, fraction=0.046)
    for j in range(4):
        sub = gs[1, 2 + j].subgridspec(2, 1, hspace=0.15)
        show(fig.add_subplot(sub[0]), pn[j], f"particle {j + 1}: noisy")
        show(fig.add_subplot(sub[1]), pc[j], "clean")
    fig.suptitle("genem simulate: 1024^2 px at 1.5 A/px, 15000 A underfocus, 128 px boxes", fontsize=11)
    out = ROOT / "docs" / "figures" / "simulate_overview.png"
    fig.savefig(out, dpi=72, bbox_inches="tight")
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
