"""The GenEM dataset folder: what ``simulate`` and ``translate`` write, and what ``restore`` and the adapters read.

This module owns the layout: the names below are its only spelling; :class:`DatasetWriter` writes a folder and
:class:`GenemDataset` reads a finished one.

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
    ground_truth/structure_00_box128.mrc  the same in the particle box (compare a reconstruction by FSC as is)
    preview.png
    .parts/mic_000001.json        per-micrograph completion records (shards and resume merge from these)
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path, remove_stale_temporaries, write_json_atomic
from .errors import GenemInputError
from .mrc import read_mrc, read_stack_images, write_mrc
from .star import (
    MICROGRAPH_PIXEL_SIZE_COLUMNS, join_image_name, merge_optics, read_star, split_image_name, star_pixel_sizes_A,
    write_star,
)

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
MICROGRAPHS_STAR = "micrographs.star"
PARTICLES_STAR = "particles.star"
PARTICLES_CS = "particles.cs"
PREVIEW_PNG = "preview.png"
COMPLETE_MARK = "manifest.json"  # the manifest, written last: a folder without it is unfinished
#: the folder of each kind of micrograph
MICROGRAPH_DIRS = {"noisy": MICROGRAPHS_DIR, "clean": CLEAN_DIR, "mask": MASKS_DIR, "ice": ICE_DIR}


def micrograph_stem(index0: int) -> str:
    return f"mic_{index0 + 1:06d}"


def micrograph_name(stem: str, kind: str = "noisy") -> str:
    """The name of a micrograph inside the folder (as in rlnMicrographName): ``Micrographs/<stem>.mrc``."""
    return f"{MICROGRAPH_DIRS[kind]}/{stem}.mrc"


def particle_image_name(index0: int, stem: str, *, clean: bool = False) -> str:
    """``NNNNNN@Particles/<stem>.mrcs`` (or its clean twin in ``ParticlesClean/``), as in rlnImageName."""
    return join_image_name(index0, f"{PARTICLES_CLEAN_DIR if clean else PARTICLES_DIR}/{stem}.mrcs")


def is_dataset_folder(root) -> bool:
    """Whether ``root`` looks like a finished dataset folder (manifest and micrographs table)."""
    return (Path(root) / COMPLETE_MARK).is_file() and (Path(root) / MICROGRAPHS_STAR).is_file()


def coordinates_path(root, stem: str) -> Path:
    """Where a dataset keeps micrograph ``stem``'s coordinate STAR."""
    return Path(root) / COORDS_DIR / f"{stem}_coords.star"


class DatasetWriter:
    """Writes a dataset folder, every file atomically; the manifest (the completion mark) goes last.

    Per-micrograph files are named by the micrograph's stem (``mic_000001``); ``.parts/<name>.json`` records let
    shards and resumed runs tell what is done."""

    def __init__(self, root):
        self.root = Path(root)

    def prepare(self) -> "DatasetWriter":
        """Create the folder and its records folder, and delete temporaries an interrupted run left."""
        (self.root / PARTS_DIR).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.root)
        return self

    @property
    def is_complete(self) -> bool:
        return (self.root / COMPLETE_MARK).exists()

    def write_micrograph(self, stem: str, image, pixel_size_A: float, kind: str = "noisy", *,
                         dtype=np.float32) -> Path:
        path = self.root / micrograph_name(stem, kind)
        write_mrc(path, image, pixel_size_A, dtype=dtype)
        return path

    def write_particle_stack(self, stem: str, images, pixel_size_A: float, *, clean: bool = False) -> Path:
        path = self.root / (PARTICLES_CLEAN_DIR if clean else PARTICLES_DIR) / f"{stem}.mrcs"
        write_mrc(path, images, pixel_size_A)
        return path

    def write_coordinates(self, stem: str, table: pd.DataFrame) -> Path:
        path = coordinates_path(self.root, stem)
        write_star(path, {"": table})
        return path

    def write_ground_truth(self, index: int, volume, pixel_size_A: float, *, particle_box: bool = False) -> str:
        """``ground_truth/structure_NN.mrc``, or with ``particle_box`` ``structure_NN_boxB.mrc`` (B: the volume's
        box, the particles'); returns its name inside the folder."""
        box = f"_box{np.shape(volume)[0]}" if particle_box else ""
        name = f"{GROUND_TRUTH_DIR}/structure_{index:02d}{box}.mrc"
        write_mrc(self.root / name, volume, pixel_size_A)
        return name

    def record_path(self, name: str) -> Path:
        return self.root / PARTS_DIR / f"{name}.json"

    def has_record(self, name: str) -> bool:
        return self.record_path(name).exists()

    def read_record(self, name: str):
        return json.loads(self.record_path(name).read_text())

    def write_record(self, name: str, obj) -> None:
        write_json_atomic(self.record_path(name), obj)

    def write_tables(self, micrographs: dict, particles: dict | None = None, *, particles_cs: bool = True) -> None:
        """micrographs.star and particles.star from their blocks ``{"optics": ..., "micrographs"/"particles": ...}``,
        and particles.cs (cryoSPARC; it reads the micrographs' shapes) beside them when there are particles."""
        write_star(self.root / MICROGRAPHS_STAR, micrographs)
        if particles is None:
            return
        write_star(self.root / PARTICLES_STAR, particles)
        if not particles_cs:
            return
        from .cs_convert import write_particles_cs  # imports cryosparc-tools: only when writing

        if len(particles["particles"]):
            write_particles_cs(self.root / PARTICLES_CS, particles["optics"], particles["particles"])

    def copy_from(self, source, folders=(CLEAN_DIR, MASKS_DIR, ICE_DIR, COORDS_DIR, PARTICLES_CLEAN_DIR,
                                         GROUND_TRUTH_DIR),
                  files=(MICROGRAPHS_STAR, PARTICLES_STAR, PARTICLES_CS)) -> None:
        """Copy ``folders`` and ``files`` of another dataset folder byte for byte (those it has)."""
        source = Path(source)
        for d in folders:
            if (source / d).is_dir():
                for f in sorted((source / d).rglob("*")):
                    if f.is_file():
                        _copy_file(f, self.root / d / f.relative_to(source / d))
        for f in files:
            if (source / f).exists():
                _copy_file(source / f, self.root / f)

    def write_manifest(self, manifest: dict) -> None:
        """The manifest, last: from now on the folder counts as finished."""
        write_json_atomic(self.root / COMPLETE_MARK, manifest)


def _copy_file(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


@dataclass
class GenemDataset:
    """Read access to a finished dataset folder."""

    root: Path

    @classmethod
    def open(cls, root) -> "GenemDataset":
        root = Path(root)
        if not root.is_dir():
            raise GenemInputError(root, "dataset folder not found")
        if not is_dataset_folder(root):
            raise GenemInputError(root, f"not a finished GenEM dataset (no {COMPLETE_MARK} / {MICROGRAPHS_STAR})")
        return cls(root)

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / COMPLETE_MARK).read_text())

    @property
    def pixel_size_A(self) -> float:
        return float(star_pixel_sizes_A(None, self.micrographs_optics(), MICROGRAPH_PIXEL_SIZE_COLUMNS)[0])

    def particle_pixel_size_A(self, rows: pd.DataFrame) -> float:
        """Pixel size of particle ``rows`` (as :meth:`particles` gives them, optics merged): the particles' own
        (:func:`star_pixel_sizes_A`), else the micrographs'."""
        px = star_pixel_sizes_A(None, rows)[:1]
        return float(px[0]) if len(px) and np.isfinite(px[0]) else self.pixel_size_A

    def micrographs_optics(self) -> pd.DataFrame:
        return read_star(self.root / MICROGRAPHS_STAR)["optics"]

    def micrographs(self) -> pd.DataFrame:
        """One row per micrograph, optics merged in."""
        b = read_star(self.root / MICROGRAPHS_STAR)
        return merge_optics(b.get("optics"), b["micrographs"])

    def particles_star(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        b = read_star(self.root / PARTICLES_STAR)
        return b["optics"], b["particles"]

    def particles(self) -> pd.DataFrame:
        optics, parts = self.particles_star()
        return merge_optics(optics, parts)

    def micrograph_path(self, name: str, kind: str = "noisy") -> Path:
        """Path of a micrograph (``name`` as in rlnMicrographName) or one of its twins: clean, mask, ice."""
        p = Path(name)
        return self.root / MICROGRAPH_DIRS[kind] / p.name

    def coordinates_path(self, name: str) -> Path:
        """The ground-truth coordinate STAR of a micrograph (``name`` as in rlnMicrographName)."""
        return coordinates_path(self.root, Path(name).stem)

    def read_micrograph(self, name: str, kind: str = "noisy") -> np.ndarray:
        return read_mrc(self.micrograph_path(name, kind))[0]

    def read_particle_images(self, rows: pd.DataFrame, column: str = "rlnImageName") -> np.ndarray:
        """Read images for the given particle rows (``column`` = rlnImageName or the clean column), in row order."""
        if column not in rows.columns:
            raise GenemInputError(self.root / PARTICLES_STAR, f"column {column} missing")
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
