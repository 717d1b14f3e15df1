"""Picking micrographs: bin to the picker's pixel size, normalise, heatmap, non-maximum suppression, picks with
scores in the input micrograph's pixels, written in the platforms' formats.

Output folder::

    picks/<micrograph stem>.star  RELION coordinates: rlnCoordinateX (column), rlnCoordinateY (row) in the input
                                  micrograph's pixels, rlnAutopickFigureOfMerit (the heatmap score)
    coordinates.star              the list RELION 4/5 Extract takes (data_coordinate_files: rlnMicrographName,
                                  rlnMicrographCoordinates)
    particles.cs                  cryoSPARC particles with location/* (and pick_stats/ncc_score = the score)
    preview.png                   the first micrographs with their picks drawn
    picks.json                    what was picked with what (written last)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from genem.io import GenemInputError, write_json_atomic, write_star
from genem.io.atomic import atomic_path
from genem.io.images import read_image
from genem.io.outputs import check_out_dir, claim_out_dir
from genem.ops import robust_location_scale
from genem.progress import ProgressCallback, report

from .images import collect_micrographs, prepare_micrograph

APPLY_COMMAND = "genem pick apply"
PICKS_DIR = "picks"
SUMMARY_FILE = "picks.json"
NMS_RADIUS_FRAC = 0.5   # picks closer than this fraction of the particle diameter are one particle
SCORE_FLOOR = 1e-3      # heatmap peaks below this are not candidates at all
MAX_UPSAMPLING = 1.5    # refuse micrographs whose pixels are coarser than the picker's by more than this


def find_peaks(heatmap: np.ndarray, radius_px: float, floor: float = SCORE_FLOOR):
    """Local maxima of ``heatmap`` above ``floor``, greedily thinned so that no two are within ``radius_px``
    (the higher score wins). Returns ``(xy (n, 2), scores (n,))`` in descending score."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    r = max(1, int(np.floor(radius_px)))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    local = heatmap == ndimage.maximum_filter(heatmap, footprint=(xx ** 2 + yy ** 2) <= r * r, mode="nearest")
    rows, cols = np.nonzero(local & (heatmap > floor))
    scores = heatmap[rows, cols].astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    xy = np.stack([cols, rows], -1)[order].astype(np.float64)
    scores = scores[order]
    keep = np.ones(len(xy), bool)
    if len(xy):
        tree = cKDTree(xy)
        for k in range(len(xy)):
            if keep[k]:
                near = tree.query_ball_point(xy[k], radius_px)
                keep[[j for j in near if j > k]] = False
    return xy[keep], scores[keep]


def pick_image(picker, image: np.ndarray, pixel_size_A: float):
    """Picks of one micrograph: ``(xy in its pixels (n, 2), scores (n,))``, all candidates (no threshold) whose
    particle lies wholly on the micrograph (centre at least a radius from the edge, as Extract needs)."""
    binned, (sy, sx) = prepare_micrograph(image, pixel_size_A, picker.pixel_size_A)
    xy, s = find_peaks(picker.heatmap(binned), NMS_RADIUS_FRAC * picker.particle_diameter_A / picker.pixel_size_A)
    return drop_edge_picks(xy * np.array([sx, sy]), s, image.shape, 0.5 * picker.particle_diameter_A / pixel_size_A)


def drop_edge_picks(xy, scores, shape, radius_px: float):
    """Keep picks whose centre is at least ``radius_px`` inside the micrograph of ``shape`` (rows, columns)."""
    h, w = shape
    ok = (xy[:, 0] >= radius_px) & (xy[:, 1] >= radius_px) & (xy[:, 0] <= w - 1 - radius_px) \
        & (xy[:, 1] <= h - 1 - radius_px)
    return xy[ok], scores[ok]


class DogPicker:
    """Training-free blob picker (difference of Gaussians, as RELION's LoG autopicking): dark disks of the given
    diameter score high. Scores are the response in units of its robust standard deviation."""

    method = "dog"

    def __init__(self, particle_diameter_A: float, pixel_size_A: float | None = None, threshold: float = 3.0):
        if not particle_diameter_A or particle_diameter_A <= 0:
            raise GenemInputError("--diameter-A", "the DoG picker needs the particle diameter (> 0)")
        self.particle_diameter_A = float(particle_diameter_A)
        self.pixel_size_A = float(pixel_size_A or particle_diameter_A / 16.0)
        self.threshold = float(threshold)

    def heatmap(self, image: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        r = 0.5 * self.particle_diameter_A / self.pixel_size_A
        dog = ndimage.gaussian_filter(image, r) - ndimage.gaussian_filter(image, r / 2.0)
        med, sd = robust_location_scale(dog)
        sd = sd or 1.0
        return ((dog - med) / sd).astype(np.float32)


def pick_micrographs(picker, micrographs, out_dir, *, pixel_size_A: float | None = None,
                     threshold: float | None = None, progress: ProgressCallback | None = None) -> Path:
    """Pick every micrograph (a micrographs STAR, files, folders or glob patterns) and write the outputs listed in
    the module docstring into ``out_dir``. Every input is checked before anything is written."""
    check_out_dir(out_dir, APPLY_COMMAND, markers=(SUMMARY_FILE,))
    mics = collect_micrographs(micrographs, pixel_size_A=pixel_size_A)
    for m in mics:
        if m.pixel_size_A > MAX_UPSAMPLING * picker.pixel_size_A:
            raise GenemInputError(m.path, f"pixel size {m.pixel_size_A:g} A is much coarser than the picker's "
                                          f"{picker.pixel_size_A:g} A: use a picker trained at this pixel size")
    out = claim_out_dir(out_dir, APPLY_COMMAND, markers=(SUMMARY_FILE,))
    cut = picker.threshold if threshold is None else float(threshold)
    results = []
    for i, m in enumerate(mics):
        img, _ = read_image(m.path)
        xy, s = pick_image(picker, img, m.pixel_size_A)
        sel = s >= cut
        results.append((m, img.shape, xy[sel], s[sel]))
        write_star(out / PICKS_DIR / f"{m.stem}.star", {"": _coordinate_table(xy[sel], s[sel])})
        report(progress, "pick", i + 1, len(mics), "mic", picks=int(sel.sum()))
    files = [(out / PICKS_DIR / f"{m.stem}.star").as_posix() for m, *_ in results]
    write_star(out / "coordinates.star", {"coordinate_files": pd.DataFrame(
        {"rlnMicrographName": [m.name for m, *_ in results], "rlnMicrographCoordinates": files})})
    write_picks_cs(out / "particles.cs", results)
    write_preview(out / "preview.png", results[:4], picker.particle_diameter_A)
    write_json_atomic(out / SUMMARY_FILE, {
        "kind": "genem-picks", "method": picker.method, "threshold": cut,
        "picker_pixel_size_A": picker.pixel_size_A, "particle_diameter_A": picker.particle_diameter_A,
        "micrographs": [{"name": m.name, "path": str(m.path), "stem": m.stem, "pixel_size_A": m.pixel_size_A,
                         "shape_px": list(shape), "diameter_px": picker.particle_diameter_A / m.pixel_size_A,
                         "n_picks": int(len(s))} for m, shape, _, s in results]})
    return out


def _coordinate_table(xy: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"rlnCoordinateX": np.round(xy[:, 0], 2), "rlnCoordinateY": np.round(xy[:, 1], 2),
                         "rlnAutopickFigureOfMerit": np.round(scores, 6)})


def write_picks_cs(path, results) -> Path:
    """Picks as a cryoSPARC particle dataset: uid + location/* (filled by the engine's one RELION -> cryoSPARC
    conversion) + pick_stats/ncc_score."""
    from genem.io.cs_convert import star_to_cs_dataset

    rows, shapes, psize = [], {}, []
    for m, shape, xy, s in results:
        shapes[m.name] = tuple(shape)
        for k in range(len(s)):
            rows.append((m.name, xy[k, 0], xy[k, 1], s[k], f"{len(rows) + 1:06d}@{m.name}"))
            psize.append(m.pixel_size_A)
    table = pd.DataFrame(rows, columns=["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY",
                                        "rlnAutopickFigureOfMerit", "rlnImageName"])
    table["rlnImagePixelSize"] = np.asarray(psize, np.float64)
    table["rlnImageSize"] = 0  # no particle images yet: the blob slot is dropped below
    dset = star_to_cs_dataset(None, table, micrograph_shape_px=shapes, micrograph_psize_A=np.asarray(psize),
                              source=str(path))
    dset = dset.filter_prefixes(["location"])
    dset.add_fields([("pick_stats/ncc_score", "<f4")])
    dset["pick_stats/ncc_score"][:] = table["rlnAutopickFigureOfMerit"].to_numpy(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            dset.save(f)
    return Path(path)


def write_preview(path, results, diameter_A: float) -> None:
    """Up to four micrographs side by side (shown at most 512 px wide), picks drawn as circles of the particle
    diameter, coloured by score."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    n = max(1, len(results))
    fig = Figure(figsize=(4 * n, 4.3), dpi=100)
    FigureCanvasAgg(fig)
    for k, (m, _, xy, s) in enumerate(results):
        ax = fig.add_subplot(1, n, k + 1)
        img, _ = read_image(m.path)
        lo, hi = np.percentile(img, [1, 99])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="lanczos")
        r = 0.5 * diameter_A / m.pixel_size_A
        for (x, y), v in zip(xy, s):
            ax.add_patch(Circle((x, y), r, fill=False, lw=0.8, color="lime"))
        ax.set_title(f"{m.stem}: {len(s)} picks", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
