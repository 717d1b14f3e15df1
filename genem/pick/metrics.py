"""Scoring picks against true centres with Topaz's protocol: picks in descending score, each matched greedily to
the nearest unmatched true centre within a radius; precision-recall over the score threshold, AUPRC (average
precision: the mean over true particles of the precision at the rank where each was found, 0 when never found)."""
from __future__ import annotations

import numpy as np


def match_picks(picks_xy, scores, truth_xy, radius_px: float) -> np.ndarray:
    """True-positive flags of one micrograph's picks, in the picks' given order (ties keep that order)."""
    picks_xy = np.asarray(picks_xy, np.float64).reshape(-1, 2)
    truth_xy = np.asarray(truth_xy, np.float64).reshape(-1, 2)
    tp = np.zeros(len(picks_xy), bool)
    if not len(picks_xy) or not len(truth_xy):
        return tp
    free = np.ones(len(truth_xy), bool)
    for k in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        d = np.hypot(*(truth_xy - picks_xy[k]).T)
        d[~free] = np.inf
        j = int(np.argmin(d))
        if d[j] <= radius_px:
            tp[k] = True
            free[j] = False
    return tp


def precision_recall(scores, tp, n_truth: int) -> dict:
    """PR curve over thresholds at each distinct score (picks of equal score enter together), AUPRC, and the
    precision, recall, F1 and threshold where F1 is best."""
    scores = np.asarray(scores, np.float64)
    tp = np.asarray(tp, bool)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], tp[order]
    ctp = np.cumsum(t)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.zeros(0, int)
    n_tp, n_pick = ctp[last].astype(np.float64), last + 1.0
    precision = n_tp / n_pick if len(s) else np.zeros(0)
    recall = n_tp / n_truth if n_truth else np.zeros(len(last))
    drec = np.diff(np.r_[0.0, recall])
    auprc = float(np.sum(drec * precision)) if n_truth else 0.0
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    best = int(np.argmax(f1)) if len(f1) else None
    return {
        "auprc": auprc,
        "n_truth": int(n_truth),
        "n_picks": int(len(s)),
        "best": {"threshold": float(s[last[best]]), "precision": float(precision[best]),
                 "recall": float(recall[best]), "f1": float(f1[best])} if best is not None
        else {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0},
        "curve": {"threshold": s[last].tolist(), "precision": precision.tolist(), "recall": recall.tolist()},
    }


def score_micrographs(items, radius_px) -> dict:
    """``items``: (picks_xy, scores, truth_xy) per micrograph; ``radius_px`` one number or one per micrograph.
    Returns :func:`precision_recall` of all picks pooled."""
    radii = np.broadcast_to(np.asarray(radius_px, np.float64), (len(items),))
    all_s, all_tp, n_truth = [], [], 0
    for (xy, s, truth), r in zip(items, radii):
        all_s.append(np.asarray(s, np.float64).reshape(-1))
        all_tp.append(match_picks(xy, s, truth, r))
        n_truth += len(np.asarray(truth).reshape(-1, 2))
    return precision_recall(np.concatenate(all_s) if all_s else np.zeros(0),
                            np.concatenate(all_tp) if all_tp else np.zeros(0, bool), n_truth)
