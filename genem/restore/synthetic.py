"""Small (noisy, clean) particle-pair datasets made with the particle-stack renderer
(:func:`genem.simulate.stacks.render_clean_stack`), in the GenEM dataset layout.

For unit tests and quick experiments; real training data comes from ``genem simulate`` (and ``translate``).
Clean = CTF-modulated projection, zero mean per image; noisy = clean + white Gaussian noise with
var(clean)/var(noise) = ``snr`` (variance of the clean images over the whole box).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genem.io import dataset as L
from genem.io.dataset import DatasetWriter
from genem.physics import CTFParams, FourierProjector, interaction_constant_rad_per_V_A
from genem.physics.rotations import sample_uniform_euler_relion
from genem.simulate.stacks import render_clean_stack


def blob_volume(box: int, n_blobs: int = 12, radius_frac: float = 0.3, seed: int = 0) -> np.ndarray:
    """A random compact 'molecule': Gaussian blobs inside a sphere of radius ``radius_frac * box``."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:box, :box, :box] - box // 2
    vol = np.zeros((box,) * 3, np.float32)
    for _ in range(n_blobs):
        c = rng.normal(size=3)
        c = c / np.linalg.norm(c) * rng.uniform(0, radius_frac * box)
        s = rng.uniform(0.04, 0.09) * box
        vol += np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * s * s)).astype(np.float32)
    return vol


def make_pair_images(volume, pixel_size_A: float, n: int, *, snr: float = 0.1, seed: int = 0, box: int | None = None,
                     defocus_range_A=(8000.0, 25000.0), voltage_kV: float = 300.0):
    """(noisy, clean, eulers (n,3), defocus (n,)) numpy arrays of ``n`` random projections of ``volume``, protein
    white (positive density gives positive low-frequency contrast, as RELION particles extracted with
    --invert_contrast) and white Gaussian noise at whole-image SNR ``snr``."""
    rng = np.random.default_rng(seed)
    proj = FourierProjector(volume, pixel_size_A)
    eul = sample_uniform_euler_relion(rng, n)
    shifts = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    dfs = rng.uniform(*defocus_range_A, n)
    ctfs = [CTFParams(d, d, 0.0, voltage_kV=voltage_kV) for d in dfs]
    # the stack renderer's contrast is 2 sigma_e x (CTF-modulated projection)
    clean = render_clean_stack(proj, eul, ctfs, box_px=box, shifts_px=shifts)
    clean = clean / (2.0 * interaction_constant_rad_per_V_A(voltage_kV))
    clean = clean - clean.mean((-2, -1), keepdim=True)
    sd = float(clean.std()) / np.sqrt(snr)
    noisy = clean + sd * torch.as_tensor(rng.standard_normal(clean.shape), dtype=torch.float32)
    return noisy.numpy(), clean.numpy(), eul, dfs


def write_pair_dataset(root, volume, pixel_size_A: float, n: int, *, snr: float = 0.1, seed: int = 0,
                       per_stack: int = 50, voltage_kV: float = 300.0) -> Path:
    """Write a minimal GenEM dataset folder holding ``n`` particle pairs (no micrographs)."""
    out = DatasetWriter(root)
    noisy, clean, eul, dfs = make_pair_images(volume, pixel_size_A, n, snr=snr, seed=seed, voltage_kV=voltage_kV)
    box = noisy.shape[-1]
    rows = []
    for s0 in range(0, n, per_stack):
        stem = L.micrograph_stem(s0 // per_stack)
        out.write_particle_stack(stem, noisy[s0:s0 + per_stack], pixel_size_A)
        out.write_particle_stack(stem, clean[s0:s0 + per_stack], pixel_size_A, clean=True)
        for i in range(min(per_stack, n - s0)):
            j = s0 + i
            rows.append({"rlnImageName": L.particle_image_name(i, stem),
                         L.CLEAN_IMAGE_COLUMN: L.particle_image_name(i, stem, clean=True),
                         "rlnMicrographName": L.micrograph_name(stem),
                         "rlnAngleRot": eul[j, 0], "rlnAngleTilt": eul[j, 1], "rlnAnglePsi": eul[j, 2],
                         "rlnDefocusU": dfs[j], "rlnDefocusV": dfs[j], "rlnDefocusAngle": 0.0,
                         "rlnOpticsGroup": 1})
    optics = pd.DataFrame([{"rlnOpticsGroupName": "opticsGroup1", "rlnOpticsGroup": 1, "rlnVoltage": voltage_kV,
                            "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
                            "rlnImagePixelSize": pixel_size_A, "rlnImageSize": box, "rlnImageDimensionality": 2}])
    mopt = optics.drop(columns=["rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality"]).assign(
        rlnMicrographPixelSize=pixel_size_A)
    mics = pd.DataFrame({"rlnMicrographName": sorted({r["rlnMicrographName"] for r in rows}), "rlnOpticsGroup": 1})
    out.write_tables({"optics": mopt, "micrographs": mics}, {"optics": optics, "particles": pd.DataFrame(rows)},
                     particles_cs=False)  # no micrographs: no location slot to fill
    out.write_manifest({"generator": "genem.restore.synthetic", "seed": seed, "snr": snr, "n_particles": n,
                        "pixel_size_A": pixel_size_A})
    return out.root
