"""Virtual specimen: how many particles, where, in which orientation, which structure, at what height."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Specimen:
    x_px: np.ndarray  # (n,) particle centres, 0-based column
    y_px: np.ndarray  # (n,) 0-based row
    euler_deg: np.ndarray  # (n, 3) RELION rot, tilt, psi
    structure: np.ndarray  # (n,) 0-based structure index
    height_A: np.ndarray  # (n,) defocus offset from the micrograph's defocus (positive = further underfocus)


def draw_particle_count(rng, mean: float, sd: float) -> int:
    return int(mean) if sd <= 0 else max(0, int(round(rng.normal(mean, sd))))


def place_particles(rng, n: int, shape_px, separation_px: float, margin_px: float, *, max_tries: int = 50) -> tuple:
    """Random sequential placement with a minimum spacing; returns (x, y) arrays (may hold fewer than n if full)."""
    h, w = shape_px
    xs, ys = np.empty(0), np.empty(0)
    lo_x, hi_x, lo_y, hi_y = margin_px, w - 1 - margin_px, margin_px, h - 1 - margin_px
    for _ in range(max_tries):
        need = n - len(xs)
        if need <= 0:
            break
        cx = rng.uniform(lo_x, hi_x, size=4 * need)
        cy = rng.uniform(lo_y, hi_y, size=4 * need)
        for x, y in zip(cx, cy):
            if len(xs) and np.min((xs - x) ** 2 + (ys - y) ** 2) < separation_px ** 2:
                continue
            xs, ys = np.append(xs, x), np.append(ys, y)
            if len(xs) == n:
                break
    return xs, ys
