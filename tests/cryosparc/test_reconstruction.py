"""Conversions proven by reconstruction: simulated particles -> .cs -> STAR -> relion_reconstruct must match the
ground-truth map as well as the direct STAR does, and the conventions' usual mistakes must visibly fail."""
import subprocess
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from cryosparc.dataset import Dataset

from genem.io import read_particles_star, write_mrc, write_star
from genem.io.star import join_image_name, split_image_name
from genem_cryosparc.convert import cs_dataset_to_star
from genem_cryosparc.offline import export_dataset, import_particles

pytestmark = [pytest.mark.relion]

import shutil  # noqa: E402

if shutil.which("relion_reconstruct") is None:
    pytest.skip("RELION binaries (Debian package relion) not installed", allow_module_level=True)


def _reconstruct(star: Path, out: Path) -> np.ndarray:
    r = subprocess.run(["relion_reconstruct", "--i", star.name, "--o", str(out), "--ctf"], cwd=star.parent,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and out.exists(), r.stdout[-1000:] + r.stderr[-1000:]
    return mrcfile.read(out).astype(np.float64)


def _cc_with_truth(vol: np.ndarray, truth: np.ndarray) -> float:
    n, N = truth.shape[0], vol.shape[0]
    o = N // 2 - n // 2  # both maps centred at index size//2
    c = vol[o:o + n, o:o + n, o:o + n]
    return float(np.corrcoef(c.ravel(), truth.ravel())[0, 1])


@pytest.fixture(scope="module")
def shifted(sim_dataset, tmp_path_factory) -> Path:
    """The simulated particles moved by whole pixels (-6..6, different in x and y), origins updated to match:
    large, asymmetric shifts make a swapped or negated shift convention show in the reconstruction."""
    out = tmp_path_factory.mktemp("shifted")
    optics, parts = read_particles_star(sim_dataset / "particles.star")
    psize = float(optics["rlnImagePixelSize"][0])
    rng = np.random.default_rng(5)
    n = len(parts)
    dx, dy = rng.integers(-6, 7, n), rng.integers(-6, 7, n)
    names = []
    by_file = {}
    for k, s in enumerate(parts["rlnImageName"]):
        i, f = split_image_name(s)
        by_file.setdefault(f, []).append((k, i))
    for f, items in by_file.items():
        stack = mrcfile.read(sim_dataset / f)
        moved = np.stack([np.roll(stack[i], (dy[k], dx[k]), axis=(0, 1)) for k, i in items])
        write_mrc(out / "Shifted" / Path(f).name, moved, psize)
        for j, (k, _) in enumerate(items):
            names.append((k, join_image_name(j, f"Shifted/{Path(f).name}")))
    parts = parts.copy()
    parts["rlnImageName"] = [nm for _, nm in sorted(names)]
    # content moved by +d pixels => the centre's offset grew by d => origin (minus the offset) falls by d
    parts["rlnOriginXAngst"] = parts["rlnOriginXAngst"] - dx * psize
    parts["rlnOriginYAngst"] = parts["rlnOriginYAngst"] - dy * psize
    write_star(out / "particles.star", {"optics": optics, "particles": parts.drop(columns=["rlnGenemCleanImageName"])})
    return out


def test_cs_route_reconstructs_as_well_as_direct_star(sim_dataset, shifted, tmp_path):
    truth = mrcfile.read(sim_dataset / "ground_truth" / "structure_00.mrc").astype(np.float64)
    direct = _reconstruct(shifted / "particles.star", tmp_path / "direct.mrc")
    cc_direct = _cc_with_truth(direct, truth)

    export_dataset(shifted, tmp_path / "export", include_micrographs=False)
    star = import_particles(tmp_path / "export" / "genem_particles.cs", tmp_path / "imported")
    via_cs = _reconstruct(star, tmp_path / "via_cs.mrc")
    cc_cs = _cc_with_truth(via_cs, truth)
    print(f"CC with ground truth: direct STAR {cc_direct:.4f}, via .cs {cc_cs:.4f}")
    assert cc_direct > 0.7  # 200 noise-free particles at 4 A/px, CTF-weighted: the reference level
    assert abs(cc_cs - cc_direct) < 0.005
    assert np.corrcoef(direct.ravel(), via_cs.ravel())[0, 1] > 0.999

    # the same test catches each convention mistake: swapped shift order, negated shifts, transposed pose
    # (the defocus angle is checked against cryoSPARC's own import in test_convert.py: the simulated astigmatism
    # is too small at 4 A/px for a reconstruction to see it)
    cs = Dataset.load(tmp_path / "export" / "genem_particles.cs")
    mistakes = {
        "shift y,x": lambda d: d["alignments3D/shift"].__setitem__(slice(None), d["alignments3D/shift"][:, ::-1]),
        "shift negated": lambda d: d["alignments3D/shift"].__setitem__(slice(None), -d["alignments3D/shift"]),
        "pose transposed": lambda d: d["alignments3D/pose"].__setitem__(slice(None), -d["alignments3D/pose"]),
    }
    for name, spoil in mistakes.items():
        bad = cs.copy()
        spoil(bad)
        o, p = cs_dataset_to_star(bad, project_root=tmp_path / "export", star_root=tmp_path / "imported")
        write_star(tmp_path / "imported" / "bad.star", {"optics": o, "particles": p})
        cc_bad = _cc_with_truth(_reconstruct(tmp_path / "imported" / "bad.star", tmp_path / "bad.mrc"), truth)
        print(f"  {name}: CC {cc_bad:.4f}")
        assert cc_bad < cc_direct - 0.05, name
