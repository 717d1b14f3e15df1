"""The GenEM dataset folder: what ``simulate`` and ``translate`` write, and what ``restore`` and the adapters read.

Layout (all paths inside STAR files are relative to the folder, so a RELION project can take it as a job folder)::

    manifest.json                 parameters, seed, versions, command line, per-micrograph seeds
    micrographs.star              optics + one row per micrograph with its CTF (rlnMicrographName, rlnDefocusU, ...)
    Micrographs/mic_000001.mrc    noisy micrographs
    Clean/mic_000001.mrc          clean (noise-free) micrographs, same contrast scale as the noisy ones
    Masks/mic_000001.mrc          particle masks (uint8: 0 background, k>0 particle k on that micrograph)
    Ice/mic_000001.mrc            ice thickness maps (nm)
    Coordinates/mic_000001_coords.star   ground-truth centres (rlnCoordinateX/Y, 0-based pixels) and poses
    Particles/mic_000001.mrcs     extracted noisy particles;  ParticlesClean/mic_000001.mrcs  their clean twins
    particles.star                optics + particles (coordinates, rlnAngleRot/Tilt/Psi, rlnOriginX/YAngst, CTF,
                                  rlnImageName, rlnGenemCleanImageName)
    particles.cs                  the same ground truth as a cryoSPARC Dataset
    ground_truth/structure_00.mrc the potential(s) used, at the simulation pixel size
    preview.png
    .parts/mic_000001.json        per-micrograph completion records (shards and resume merge from these)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import GenemInputError
from .mrc import read_mrc, read_stack_images
from .star import MICROGRAPH_PIXEL_SIZE_COLUMNS, merge_optics, read_star, split_image_name, star_pixel_sizes_A

MICROGRAPHS_DIR = "Micrographs"
CLEAN_DIR = "Clean"
MASKS_DIR = "Masks"
ICE_DIR = "Ice"
COORDS_DIR = "Coordinates"
PARTICLES_DIR = "Particles"
PARTICLES_CLEAN_DIR = "ParticlesClean"
GROUND_TRUTH_DIR = "ground_truth"
PARTS_DIR = ".parts"
CLEAN_IMAGE_COLUMN = "rlnGenemCleanImageName"
COMPLETE_MARK = "manifest.json"


def micrograph_stem(index0: int) -> str:
    return f"mic_{index0 + 1:06d}"


@dataclass
class GenemDataset:
    """Read access to a finished dataset folder."""

    root: Path

    @classmethod
    def open(cls, root) -> "GenemDataset":
        root = Path(root)
        if not root.is_dir():
            raise GenemInputError(root, "dataset folder not found")
        if not (root / COMPLETE_MARK).exists() or not (root / "micrographs.star").exists():
            raise GenemInputError(root, "not a finished GenEM dataset (no manifest.json / micrographs.star)")
        return cls(root)

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / "manifest.json").read_text())

    @property
    def pixel_size_A(self) -> float:
        return float(star_pixel_sizes_A(None, self.micrographs_optics(), MICROGRAPH_PIXEL_SIZE_COLUMNS)[0])

    def micrographs_optics(self) -> pd.DataFrame:
        return read_star(self.root / "micrographs.star")["optics"]

    def micrographs(self) -> pd.DataFrame:
        """One row per micrograph, optics merged in."""
        b = read_star(self.root / "micrographs.star")
        return merge_optics(b.get("optics"), b["micrographs"])

    def particles_star(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        b = read_star(self.root / "particles.star")
        return b["optics"], b["particles"]

    def particles(self) -> pd.DataFrame:
        optics, parts = self.particles_star()
        return merge_optics(optics, parts)

    def micrograph_path(self, name: str, kind: str = "noisy") -> Path:
        """Path of a micrograph (``name`` as in rlnMicrographName) or one of its twins: clean, mask, ice."""
        p = Path(name)
        folder = {"noisy": MICROGRAPHS_DIR, "clean": CLEAN_DIR, "mask": MASKS_DIR, "ice": ICE_DIR}[kind]
        return self.root / folder / p.name

    def read_micrograph(self, name: str, kind: str = "noisy") -> np.ndarray:
        return read_mrc(self.micrograph_path(name, kind))[0]

    def read_particle_images(self, rows: pd.DataFrame, column: str = "rlnImageName") -> np.ndarray:
        """Read images for the given particle rows (``column`` = rlnImageName or the clean column), in row order."""
        if column not in rows.columns:
            raise GenemInputError(self.root / "particles.star", f"column {column} missing")
        out = []
        names = [split_image_name(n) for n in rows[column]]
        # group by file for fewer opens, then restore order
        by_file: dict[str, list[tuple[int, int]]] = {}
        for k, (i, f) in enumerate(names):
            by_file.setdefault(f, []).append((k, i))
        result = [None] * len(names)
        for f, items in by_file.items():
            imgs = read_stack_images(self.root / f, [i for _, i in items])
            for (k, _), im in zip(items, imgs):
                result[k] = im
        out = np.stack(result) if result else np.zeros((0, 0, 0), np.float32)
        return out
