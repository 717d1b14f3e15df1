"""``genem evaluate picking``: picks (a folder of coordinate STARs, as ``genem pick apply`` writes) against truth
(coordinate STARs, one STAR with rlnMicrographName, a GenEM dataset folder, or label masks), with the matching
protocol of :mod:`genem.pick.metrics`. Writes the report JSON, ``<report>_pr.png`` and ``<report>_overlay.png``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genem.io import GenemInputError, read_star, write_json_atomic
from genem.io.atomic import atomic_path
from genem.io.dataset import COORDS_DIR
from genem.io.images import read_image
from genem.io.outputs import check_out_file

from .apply import PICKS_DIR, SUMMARY_FILE
from .data import LABEL_SUFFIXES, disk_diameter_px, label_key, read_coordinates_star, read_mask, centres_from_mask
from .metrics import match_picks, score_micrographs


def read_picks(folder) -> tuple[dict, dict]:
    """``({stem: (xy, scores)}, summary of genem pick apply or {})`` from a picks folder (or its picks/)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenemInputError(folder, "picks folder not found")
    summary = json.loads((folder / SUMMARY_FILE).read_text()) if (folder / SUMMARY_FILE).is_file() else {}
    star_dir = folder / PICKS_DIR if (folder / PICKS_DIR).is_dir() else folder
    picks = {}
    for p in sorted(star_dir.glob("*.star")):
        xy, fom = read_coordinates_star(p)
        picks[p.stem] = (xy, np.ones(len(xy)) if fom is None else fom)
    if not picks:
        raise GenemInputError(folder, "no coordinate STAR files")
    return picks, summary


def read_truth(truth, stems) -> tuple[dict, float | None]:
    """``({pick stem: true centres}, disk diameter in px measured on label masks or None)``."""
    truth = Path(truth)
    if not truth.exists():
        raise GenemInputError(truth, "truth not found")
    if truth.is_file() and truth.suffix == ".star":
        blocks = read_star(truth)
        rows = next((v for v in blocks.values() if "rlnCoordinateX" in v.columns), None)
        if rows is None or "rlnMicrographName" not in rows.columns:
            if len(stems) != 1:
                raise GenemInputError(truth, "no rlnMicrographName column: give a folder of per-micrograph STARs")
            return {next(iter(stems)): read_coordinates_star(truth)[0]}, None
        out = {}
        for name, g in rows.groupby("rlnMicrographName", sort=False):
            key = label_key(Path(str(name)).stem, stems)
            if key is not None:
                out[key] = g[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(np.float64)
        return out, None
    folder = truth / COORDS_DIR if (truth / COORDS_DIR).is_dir() and (truth / "manifest.json").exists() else truth
    files = [truth] if truth.is_file() else sorted(p for p in folder.iterdir() if p.suffix.lower() in LABEL_SUFFIXES)
    out, diams = {}, []
    for f in files:
        key = label_key(f.stem, stems)
        if key is None:
            continue
        if f.suffix.lower() == ".star":
            out[key] = read_coordinates_star(f)[0]
        else:
            mask = read_mask(f)
            diams.append(disk_diameter_px(mask))
            out[key] = centres_from_mask(mask, diams[-1])
    return out, (float(np.median(diams)) if diams else None)


def evaluate_picking(picks, truth, out_json, *, radius_px: float | None = None) -> dict:
    """Score the picks in folder ``picks`` against ``truth``; write the report and pictures; return the report."""
    out_json = check_out_file(out_json)
    picked, summary = read_picks(picks)
    true, mask_diameter = read_truth(truth, picked)
    if not true:
        raise GenemInputError(truth, f"no truth for any of the {len(picked)} picked micrographs (matched by name)")
    if radius_px is None:
        if mask_diameter:
            radius_px = mask_diameter / 2
        elif summary.get("micrographs"):
            radius_px = float(np.median([m["diameter_px"] for m in summary["micrographs"]])) / 2
        else:
            raise GenemInputError("--radius-px", "matching radius unknown (no masks, no picks.json): give it")
    stems = sorted(true)
    items = [(*picked.get(s, (np.zeros((0, 2)), np.zeros(0))), true[s]) for s in stems]
    res = score_micrographs(items, radius_px)
    per = []
    for s, (xy, sc, t) in zip(stems, items):
        r = score_micrographs([(xy, sc, t)], radius_px)
        per.append({"micrograph": s, "n_truth": len(t), "n_picks": len(sc), "auprc": r["auprc"], **r["best"]})
    report = {"auprc": res["auprc"], **{k: res["best"][k] for k in ("precision", "recall", "f1", "threshold")},
              "radius_px": float(radius_px), "n_micrographs": len(stems), "n_truth": res["n_truth"],
              "n_picks": res["n_picks"], "micrographs_without_picks": [s for s in stems if s not in picked],
              "picked_without_truth": sorted(set(picked) - set(true)), "per_micrograph": per,
              "protocol": "picks in descending score, each matched to the nearest unmatched true centre within "
                          "radius_px; AUPRC = average precision over the true particles",
              "picks": str(picks), "truth": str(truth), "curve": res["curve"]}
    write_json_atomic(out_json, report)
    _plot_pr(out_json.with_name(out_json.stem + "_pr.png"), res)
    first = stems[0]
    image_path = next((m["path"] for m in summary.get("micrographs", []) if m.get("stem") == first), None)
    _plot_overlay(out_json.with_name(out_json.stem + "_overlay.png"), first, image_path, *items[0], radius_px,
                  res["best"]["threshold"])
    return report


def _canvas(w_in: float, h_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w_in, h_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _plot_pr(path, res) -> None:
    fig = _canvas(4.5, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(res["curve"]["recall"], res["curve"]["precision"], lw=1.5)
    b = res["best"]
    ax.plot([b["recall"]], [b["precision"]], "o", color="crimson", label=f"best F1 {b['f1']:.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"AUPRC {res['auprc']:.3f}")
    ax.legend(loc="lower left")
    _save(fig, path)


def _plot_overlay(path, stem, image_path, xy, scores, truth, radius_px, threshold) -> None:
    """True centres (green circles of the matching radius), picks above the best threshold: matched (blue) and
    false (red crosses)."""
    fig = _canvas(6, 6.3)
    ax = fig.add_subplot(1, 1, 1)
    if image_path and Path(image_path).is_file():
        img, _ = read_image(image_path)
        lo, hi = np.percentile(img, [1, 99])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
    else:
        ax.set_aspect("equal")
        ax.invert_yaxis()
    from matplotlib.patches import Circle

    for x, y in truth:
        ax.add_patch(Circle((x, y), radius_px, fill=False, color="lime", lw=0.8))
    sel = scores >= (threshold if threshold is not None else np.inf)
    tp = match_picks(xy[sel], scores[sel], truth, radius_px)
    p = xy[sel]
    ax.plot(p[tp, 0], p[tp, 1], ".", color="deepskyblue", ms=5)
    ax.plot(p[~tp, 0], p[~tp, 1], "x", color="red", ms=5)
    ax.set_title(f"{stem}: truth (green), matched (blue), false picks (red)", fontsize=8)
    ax.set_axis_off()
    _save(fig, path)
