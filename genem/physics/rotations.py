"""Rotations in RELION's ZYZ Euler convention (degrees), and uniform sampling on SO(3)."""
from __future__ import annotations

import numpy as np


def euler_to_matrix_relion(rot_deg, tilt_deg, psi_deg) -> np.ndarray:
    """RELION ``Euler_angles2matrix``: returns A (..., 3, 3); the projection of a 3D point r is (A r)[:2]."""
    a, b, g = (np.deg2rad(np.asarray(x, dtype=np.float64)) for x in (rot_deg, tilt_deg, psi_deg))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    A = np.empty(np.broadcast(a, b, g).shape + (3, 3))
    A[..., 0, 0] = cg * cc - sg * sa
    A[..., 0, 1] = cg * cs + sg * ca
    A[..., 0, 2] = -cg * sb
    A[..., 1, 0] = -sg * cc - cg * sa
    A[..., 1, 1] = -sg * cs + cg * ca
    A[..., 1, 2] = sg * sb
    A[..., 2, 0] = sc
    A[..., 2, 1] = ss
    A[..., 2, 2] = cb
    return A


def matrix_to_euler_relion(A) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`euler_to_matrix_relion` (RELION ``Euler_matrix2angles``), degrees."""
    A = np.asarray(A, dtype=np.float64)
    abs_sb = np.sqrt(A[..., 0, 2] ** 2 + A[..., 1, 2] ** 2)
    tilt = np.arctan2(abs_sb, A[..., 2, 2])
    gimbal = abs_sb <= 16 * np.finfo(float).eps
    psi = np.where(gimbal, 0.0, np.arctan2(A[..., 1, 2], -A[..., 0, 2]))
    rot = np.where(gimbal, np.arctan2(-A[..., 1, 0], A[..., 0, 0]), np.arctan2(A[..., 2, 1], A[..., 2, 0]))
    return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)


def sample_uniform_euler_relion(rng: np.random.Generator, n: int) -> np.ndarray:
    """n poses uniform on SO(3) (Haar measure, via uniform unit quaternions), as (n, 3) rot/tilt/psi degrees."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    R = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
    return np.stack(matrix_to_euler_relion(R), -1)
