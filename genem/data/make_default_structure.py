"""Builds the built-in default structure, ``default_structure.pdb``: a designed toy assembly, not a deposited model.

Six copies of an ideal four-helix bundle (4 x 28 residues of poly-alanine-like backbone + C-beta, ideal
alpha-helix geometry: 3.6 residues per turn, 1.5 A rise) sit on the vertices of an octahedron with their long axes
pointing out from the centre: an O-symmetric-looking hollow particle about 120 A across, ~3400 atoms. It is small
enough to ship in the package and large enough to see in simulated micrographs. Run this file to regenerate it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# cylindrical coordinates (radius A, phase deg, z A) of backbone atoms relative to each residue's C-alpha frame
_ATOMS = [("N", "N", 1.55, -28.0, -0.96), ("CA", "C", 2.30, 0.0, 0.0), ("C", "C", 1.61, 28.0, 1.07),
          ("O", "O", 1.76, 61.0, 2.19), ("CB", "C", 3.30, -9.0, -0.73)]


def _helix(n_res: int) -> list[tuple[str, str, int, np.ndarray]]:
    out = []
    for i in range(n_res):
        base_phi, base_z = np.deg2rad(100.0 * i), 1.5 * i
        for name, el, r, dphi, dz in _ATOMS:
            phi = base_phi + np.deg2rad(dphi)
            out.append((name, el, i + 1, np.array([r * np.cos(phi), r * np.sin(phi), base_z + dz])))
    return out


def build_atoms() -> list[tuple[str, str, str, int, np.ndarray]]:
    n_res = 28
    helix = _helix(n_res)
    length = 1.5 * (n_res - 1)
    bundle = []  # four helices on a 10 A square, alternately antiparallel, axis along z, centred
    for h, (x, y) in enumerate([(5, 5), (-5, 5), (-5, -5), (5, -5)]):
        flip = -1 if h % 2 else 1
        for name, el, resi, p in helix:
            q = p.copy()
            q[2] = flip * (q[2] - length / 2)
            if flip < 0:
                q[1] = -q[1]
            bundle.append((name, el, h, resi, q + np.array([x, y, 0.0])))
    atoms = []
    axes = [np.array(a, float) for a in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]]
    for c, ax in enumerate(axes):
        # rotation taking z to ax
        z = np.array([0, 0, 1.0])
        v = np.cross(z, ax)
        s, cth = np.linalg.norm(v), float(np.dot(z, ax))
        if s < 1e-9:
            R = np.eye(3) if cth > 0 else np.diag([1, -1, -1.0])
        else:
            K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]]) / s
            R = np.eye(3) + s * K + (1 - cth) * K @ K
        for name, el, h, resi, q in bundle:
            chain = "ABCDEFGHIJKLMNOPQRSTUVWX"[c * 4 + h]
            atoms.append((name, el, chain, resi, R @ q + ax * 35.0))
    return atoms


def write_pdb(path: Path) -> None:
    lines = ["REMARK   1 GENEM DEFAULT STRUCTURE: DESIGNED TOY ASSEMBLY OF IDEAL HELIX BUNDLES (NOT A DEPOSITED MODEL)"]
    for k, (name, el, chain, resi, p) in enumerate(build_atoms(), start=1):
        lines.append(f"ATOM  {k % 100000:5d} {name:<4s} ALA {chain}{resi:4d}    {p[0]:8.3f}{p[1]:8.3f}{p[2]:8.3f}"
                     f"  1.00 20.00          {el:>2s}")
    lines.append("END")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    write_pdb(Path(__file__).with_name("default_structure.pdb"))
