"""Electrostatic potential of a structure on a voxel grid.

Atomic models use the Peng et al. (1996) five-Gaussian electron scattering factors (taken from gemmi's
International Tables C 4.3.2.2 table, which is Peng's), f(s) = sum_i a_i exp(-b_i s^2), s = sin(theta)/lambda.
Their inverse Fourier transform gives the potential of one atom,

    V(r) = 47.878 V*A^2 * sum_i a_i (4 pi / b_i)^(3/2) exp(-4 pi^2 r^2 / b_i)          [V]

and each Gaussian is integrated exactly over each voxel (separable error functions), so the voxel value is the
voxel-averaged potential: no aliasing from atoms narrower than a voxel.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from .constants import H2_OVER_2PI_M0_E_V_A2


def peng_coefficients(element: str) -> tuple[np.ndarray, np.ndarray]:
    """(a_i in A, b_i in A^2) of the five-Gaussian Peng 1996 electron scattering factor of ``element``."""
    import gemmi

    coefficients = gemmi.Element(element).c4322  # None for a name that is no element
    if coefficients is None:
        raise ValueError(f"no electron scattering factor for element {element!r}")
    a, b = np.array(coefficients.a, float), np.array(coefficients.b, float)
    if not np.any(a):
        raise ValueError(f"no electron scattering factor for element {element!r}")
    return a, b


def potential_from_atoms(positions_A: np.ndarray, elements, box: int, pixel_size_A: float, *,
                         bfactors_A2=None, occupancies=None, center: bool = True) -> np.ndarray:
    """Voxel-averaged potential (V) of atoms on a cubic grid (z, y, x), box ``box``, centre at index box//2.

    ``positions_A`` (n, 3) is (x, y, z) in A; with ``center`` the model's centre of mass goes to the box centre.
    """
    pos = np.asarray(positions_A, dtype=np.float64)
    elements = np.asarray(elements)
    n = len(pos)
    B = np.zeros(n) if bfactors_A2 is None else np.asarray(bfactors_A2, float)
    occ = np.ones(n) if occupancies is None else np.asarray(occupancies, float)
    if center:
        pos = pos - pos.mean(0)
    # voxel index coordinates, box centre at box//2
    x = pos / pixel_size_A + box // 2
    vol = np.zeros((box, box, box), dtype=np.float64)
    edges = np.arange(box + 1) - 0.5  # voxel j spans [j-0.5, j+0.5]
    for el in np.unique(elements):
        sel = elements == el
        a, b = peng_coefficients(str(el))
        xs, Bs, os_ = x[sel], B[sel], occ[sel]
        for ai, bi in zip(a, b):
            bt = bi + Bs  # atomic displacement broadens each Gaussian
            sigma_px = np.sqrt(bt / (8 * math.pi ** 2)) / pixel_size_A  # exp(-4pi^2 r^2/b) = exp(-r^2/(2 sigma^2))
            # amplitude so that the 3D integral equals 47.878 * a_i (int of (4pi/b)^1.5 exp(-4pi^2 r^2/b) d^3r = 1)
            weight = H2_OVER_2PI_M0_E_V_A2 * ai * os_ / pixel_size_A ** 3  # voxel average = integral / voxel volume
            half = int(np.ceil(4 * sigma_px.max())) + 1
            _splat_gaussians(vol, xs, sigma_px, weight, half, edges)
    return vol.astype(np.float32)


def _splat_gaussians(vol, xs, sigma_px, weight, half, edges, chunk=4096):
    box = vol.shape[0]
    offs = np.arange(-half, half + 1)
    for s in range(0, len(xs), chunk):
        xc, sg, w = xs[s:s + chunk], sigma_px[s:s + chunk], weight[s:s + chunk]
        base = np.rint(xc).astype(np.int64)  # (m, 3) nearest voxel, order x, y, z
        idx = base[:, None, :] + offs[None, :, None]  # (m, k, 3)
        lo = idx - 0.5
        hi = idx + 0.5
        den = (np.sqrt(2.0) * sg)[:, None, None]
        frac = 0.5 * (erf((hi - xc[:, None, :]) / den) - erf((lo - xc[:, None, :]) / den))  # (m, k, 3)
        valid = (idx >= 0) & (idx < box)
        frac = np.where(valid, frac, 0.0)
        idxc = np.clip(idx, 0, box - 1)
        # outer product over z, y, x -> (m, k, k, k) in (z, y, x)
        vals = (w[:, None, None, None] * frac[:, :, None, None, 2] * frac[:, None, :, None, 1]
                * frac[:, None, None, :, 0])
        zi = idxc[:, :, None, None, 2]
        yi = idxc[:, None, :, None, 1]
        xi = idxc[:, None, None, :, 0]
        zi, yi, xi = np.broadcast_arrays(zi, yi, xi)
        flat = (zi * box + yi) * box + xi
        np.add.at(vol.reshape(-1), flat.reshape(-1), vals.reshape(-1))


def read_atomic_model(path):
    """(positions (n,3) A, elements (n,), bfactors (n,), occupancies (n,)) from PDB/mmCIF via gemmi; no hydrogens added."""
    import gemmi

    st = gemmi.read_structure(str(path))
    st.setup_entities()
    model = st[0]
    pos, els, bs, occ = [], [], [], []
    for ch in model:
        for res in ch:
            for at in res:
                pos.append(at.pos.tolist())
                els.append(at.element.name)
                bs.append(at.b_iso)
                occ.append(at.occ)
    if not pos:
        raise ValueError("the model has no atoms")
    return np.array(pos), np.array(els), np.array(bs), np.array(occ)


#: volume per non-hydrogen protein atom (A^3): 1.21 A^3/Da x ~14.5 Da per heavy atom
PROTEIN_VOLUME_PER_ATOM_A3 = 17.6


def displace_solvent(volume_V: np.ndarray, n_atoms: int, pixel_size_A: float, solvent_potential_V: float) -> np.ndarray:
    """The potential relative to the surrounding ice: the ice's mean inner potential is removed where the molecule
    excludes it (an envelope of ``n_atoms`` x 17.6 A^3 around the densest voxels, with a one-voxel soft edge).
    The particle's contrast against ice is what the microscope sees; in vacuum values it would be ~3x too strong."""
    from scipy import ndimage

    if solvent_potential_V <= 0 or n_atoms <= 0:
        return volume_V
    n_vox = int(min(volume_V.size, n_atoms * PROTEIN_VOLUME_PER_ATOM_A3 / pixel_size_A ** 3))
    smooth = ndimage.gaussian_filter(volume_V, 1.5 / pixel_size_A)
    thr = np.partition(smooth.ravel(), -n_vox)[-n_vox]
    env = ndimage.gaussian_filter((smooth >= thr).astype(np.float32), 0.5)
    return (volume_V - solvent_potential_V * env).astype(np.float32)
