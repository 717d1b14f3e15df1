"""Small (noisy, clean) particle-pair datasets made directly from genem.physics, in the GenEM dataset layout.

For unit tests and quick experiments; real training data comes from ``genem simulate`` (and ``translate``).
Clean = CTF-modulated projection; noisy = clean + white Gaussian noise with var(clean)/var(noise) = ``snr``
(variance of the clean images over the whole box).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genem.io import write_json_atomic, write_mrc, write_star
from genem.physics import CTFParams, FourierProjector, compute_ctf_2d, euler_to_matrix_relion
from genem.physics.rotations import sample_uniform_euler_relion


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
    box = box or proj.box
    eul = sample_uniform_euler_relion(rng, n)
    R = torch.as_tensor(np.stack([euler_to_matrix_relion(*e) for e in eul]), dtype=torch.float32)
    shifts = torch.as_tensor(rng.uniform(-2, 2, (n, 2)), dtype=torch.float32)
    img = proj.project(R, box, shifts_px=shifts)
    dfs = rng.uniform(*defocus_range_A, n)
    ctf = compute_ctf_2d([CTFParams(d, d, 0.0, voltage_kV=voltage_kV) for d in dfs], (box, box), pixel_size_A)
    clean = torch.fft.irfft2(torch.fft.rfft2(img) * ctf, s=(box, box))
    clean = clean - clean.mean((-2, -1), keepdim=True)
    sd = float(clean.std()) / np.sqrt(snr)
    noisy = clean + sd * torch.as_tensor(rng.standard_normal(clean.shape), dtype=torch.float32)
    return noisy.numpy(), clean.numpy(), eul, dfs


def write_pair_dataset(root, volume, pixel_size_A: float, n: int, *, snr: float = 0.1, seed: int = 0,
                       per_stack: int = 50, voltage_kV: float = 300.0) -> Path:
    """Write a minimal GenEM dataset folder holding ``n`` particle pairs (no micrographs)."""
    root = Path(root)
    noisy, clean, eul, dfs = make_pair_images(volume, pixel_size_A, n, snr=snr, seed=seed, voltage_kV=voltage_kV)
    box = noisy.shape[-1]
    rows = []
    for s0 in range(0, n, per_stack):
        k = s0 // per_stack
        name = f"mic_{k + 1:06d}.mrcs"
        write_mrc(root / "Particles" / name, noisy[s0:s0 + per_stack], pixel_size_A)
        write_mrc(root / "ParticlesClean" / name, clean[s0:s0 + per_stack], pixel_size_A)
        for i in range(min(per_stack, n - s0)):
            j = s0 + i
            rows.append({"rlnImageName": f"{i + 1:06d}@Particles/{name}",
                         "rlnGenemCleanImageName": f"{i + 1:06d}@ParticlesClean/{name}",
                         "rlnMicrographName": f"Micrographs/mic_{k + 1:06d}.mrc",
                         "rlnAngleRot": eul[j, 0], "rlnAngleTilt": eul[j, 1], "rlnAnglePsi": eul[j, 2],
                         "rlnDefocusU": dfs[j], "rlnDefocusV": dfs[j], "rlnDefocusAngle": 0.0,
                         "rlnOpticsGroup": 1})
    optics = pd.DataFrame([{"rlnOpticsGroupName": "opticsGroup1", "rlnOpticsGroup": 1, "rlnVoltage": voltage_kV,
                            "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
                            "rlnImagePixelSize": pixel_size_A, "rlnImageSize": box, "rlnImageDimensionality": 2}])
    mopt = optics.drop(columns=["rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality"]).assign(
        rlnMicrographPixelSize=pixel_size_A)
    mics = pd.DataFrame({"rlnMicrographName": sorted({r["rlnMicrographName"] for r in rows}), "rlnOpticsGroup": 1})
    write_star(root / "particles.star", {"optics": optics, "particles": pd.DataFrame(rows)})
    write_star(root / "micrographs.star", {"optics": mopt, "micrographs": mics})
    write_json_atomic(root / "manifest.json", {"generator": "genem.restore.synthetic", "seed": seed, "snr": snr,
                                               "n_particles": n, "pixel_size_A": pixel_size_A})
    return root
