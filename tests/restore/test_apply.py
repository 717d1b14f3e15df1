import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch

from genem.io import read_star, write_mrc, write_star
from genem.io.star import split_image_name
from genem.io import GenemInputError
from genem.ops import blend_window_1d
from genem.restore.apply import denoise_micrograph, denoise_micrographs, denoise_particles, read_particle_set
from genem.restore.model import Denoiser

ROOT = Path(__file__).resolve().parents[2]


def genem(*args):
    return subprocess.run([sys.executable, "-m", "genem", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def _images(star_path, root):
    blocks = read_star(star_path)
    out = []
    for n in blocks["particles"]["rlnImageName"]:
        i, p = split_image_name(n)
        with mrcfile.open(Path(root) / p, permissive=True) as m:
            out.append(np.array(m.data[i]))
    return np.stack(out)


def test_apply_star_keeps_rows_columns_and_is_order_independent(pair_dataset, tiny_model_dir, tmp_path, digest):
    before = digest(pair_dataset)
    r = genem("denoise", "apply", "--model", tiny_model_dir, "--particles", pair_dataset / "particles.star",
              "--out", tmp_path / "out", "--batch-size", "7", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert digest(pair_dataset) == before  # input untouched
    inp = read_star(pair_dataset / "particles.star")
    out = read_star(tmp_path / "out" / "particles_denoised.star")
    assert list(out) == list(inp)
    pi, po = inp["particles"], out["particles"]
    assert list(po.columns) == list(pi.columns) and len(po) == len(pi)
    pd.testing.assert_frame_equal(po.drop(columns="rlnImageName"), pi.drop(columns="rlnImageName"))
    # image names are relative to the same root as the input's (the dataset folder here)
    den = _images(tmp_path / "out" / "particles_denoised.star", pair_dataset)
    assert den.shape == (30, 32, 32) and np.all(np.isfinite(den))
    assert not np.allclose(den, _images(pair_dataset / "particles.star", pair_dataset))

    # shuffled rows + another batch size: each particle gets the same result (per-particle seeds)
    shuffled = pi.sample(frac=1.0, random_state=1)
    star2 = tmp_path / "shuf" / "shuffled.star"
    write_star(star2, {"optics": inp["optics"], "particles": shuffled})
    out2 = denoise_particles(star2, tmp_path / "out2", Denoiser.load(tiny_model_dir), root=pair_dataset,
                             batch_size=4)
    den2 = _images(out2, pair_dataset)
    assert np.allclose(den2, den[shuffled.index.to_numpy()], atol=1e-4)


def test_apply_mrcs_and_cs(pair_dataset, tiny_model_dir, tmp_path):
    from cryosparc.dataset import Dataset

    model = Denoiser.load(tiny_model_dir)
    stack = pair_dataset / "Particles" / "mic_000001.mrcs"
    out = denoise_particles(stack, tmp_path / "m", model)
    with mrcfile.open(out) as m:
        assert m.data.shape == (10, 32, 32) and m.voxel_size.x == pytest.approx(4.0)
    # a cryoSPARC .cs naming the same stacks (blob/path relative to the "project" = dataset folder)
    n = 12
    ds = Dataset.allocate(n, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "u4", (2,)),
                              ("blob/psize_A", "f4"), ("ctf/df1_A", "f4")])
    ds["blob/path"] = np.array([f"Particles/mic_00000{1 + k // 10}.mrcs" for k in range(n)], dtype=object)
    ds["blob/idx"] = np.array([k % 10 for k in range(n)], dtype=np.uint32)
    ds["blob/shape"] = 32
    ds["blob/psize_A"] = 4.0
    ds["ctf/df1_A"] = np.arange(n, dtype=np.float32) * 100
    cs = tmp_path / "proj" / "J1" / "particles.cs"
    cs.parent.mkdir(parents=True)
    ds.save(str(cs))
    out = denoise_particles(cs, tmp_path / "c", model, root=pair_dataset)
    got = Dataset.load(str(out))
    assert len(got) == n and np.array_equal(got["ctf/df1_A"], ds["ctf/df1_A"])
    paths = [p.decode() if isinstance(p, bytes) else p for p in got["blob/path"]]
    assert all((pair_dataset / p).exists() for p in paths)
    ref = denoise_particles(pair_dataset / "particles.star", tmp_path / "s", model)
    a = _images(ref, pair_dataset)[:n]
    b = []
    for p, i in zip(paths, got["blob/idx"]):
        with mrcfile.open(pair_dataset / p) as m:
            b.append(np.array(m.data[int(i)]))
    assert np.allclose(np.stack(b), a, atol=1e-4)


def test_other_pixel_size_is_resampled(pair_dataset, tiny_model_dir, tmp_path):
    model = Denoiser.load(tiny_model_dir)
    out = denoise_particles(pair_dataset / "Particles" / "mic_000002.mrcs", tmp_path / "p", model,
                            pixel_size_A=3.0)
    with mrcfile.open(out) as m:
        assert m.data.shape == (10, 32, 32) and m.voxel_size.x == pytest.approx(3.0)


def _bad(tmp_path, rows, optics, model, root):
    star = tmp_path / "bad" / "bad.star"
    write_star(star, {"optics": optics, "particles": rows})
    with pytest.raises(GenemInputError) as e:
        denoise_particles(star, tmp_path / "o", model, root=root)
    assert not (tmp_path / "o").exists() or not any(p.is_file() for p in (tmp_path / "o").rglob("*"))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_inputs_fail_cleanly(pair_dataset, tiny_model_dir, tmp_path, digest):
    model = Denoiser.load(tiny_model_dir)
    before = digest(pair_dataset)
    inp = read_star(pair_dataset / "particles.star")
    rows, optics = inp["particles"], inp["optics"]
    assert "rlnImageName" in _bad(tmp_path, rows.drop(columns="rlnImageName"), optics, model, pair_dataset)
    r2 = rows.copy()
    r2.loc[3, "rlnImageName"] = "000001@Particles/missing.mrcs"
    assert "missing.mrcs" in _bad(tmp_path, r2, optics, model, pair_dataset)
    r3 = rows.copy()
    r3.loc[3, "rlnImageName"] = "000011@Particles/mic_000001.mrcs"
    assert "out of range" in _bad(tmp_path, r3, optics, model, pair_dataset)
    write_mrc(tmp_path / "bad" / "big.mrcs", np.zeros((2, 48, 48), np.float32), 4.0)
    r4 = rows.copy()
    r4.loc[5, "rlnImageName"] = f"000001@{tmp_path / 'bad' / 'big.mrcs'}"
    assert "box sizes differ" in _bad(tmp_path, r4, optics, model, pair_dataset)
    o2 = optics.copy()
    o2["rlnImagePixelSize"] = 9.0  # far coarser than the model's 4 A: refused
    assert "pixel size" in _bad(tmp_path, rows, o2, model, pair_dataset)
    assert digest(pair_dataset) == before
    # the command line: one line, exit status != 0, nothing written
    write_star(tmp_path / "bad" / "bad.star", {"optics": optics, "particles": r3})
    r = genem("denoise", "apply", "--model", tiny_model_dir, "--particles", tmp_path / "bad" / "bad.star",
              "--root", pair_dataset, "--out", tmp_path / "o3", "--no-progress")
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("genem: error:"), r.stderr
    assert not (tmp_path / "o3").exists()
    with pytest.raises(GenemInputError, match="model"):
        Denoiser.load(tmp_path / "nomodel")


def _denoise_interrupted(star, out, model, monkeypatch):
    """Run denoise_particles into ``out`` and stop it (KeyboardInterrupt) in the second stack (batches of 4, stacks
    of 10)."""
    import genem.restore.apply as apply_mod

    real, calls = apply_mod.denoise_batch, []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(apply_mod, "denoise_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        denoise_particles(star, out, model, batch_size=4)
    monkeypatch.setattr(apply_mod, "denoise_batch", real)


def test_interrupted_run_resumes_to_the_same_result(pair_dataset, tiny_model_dir, tmp_path, monkeypatch):
    import genem.restore.apply as apply_mod

    model = Denoiser.load(tiny_model_dir)
    star = pair_dataset / "particles.star"
    whole = denoise_particles(star, tmp_path / "whole", model, batch_size=4)
    _denoise_interrupted(star, tmp_path / "cut", model, monkeypatch)
    cut = tmp_path / "cut"
    # unfinished: a record, the first stack only, no metadata that would look finished
    assert (cut / apply_mod.UNFINISHED_RECORD).exists() and not (cut / "particles_denoised.star").exists()
    done = list((cut / "Denoised").rglob("*.mrcs"))
    assert [p.name for p in done] == ["mic_000001.mrcs"]
    with pytest.raises(GenemInputError, match="unfinished run"):
        denoise_particles(star, cut, model)
    with pytest.raises(GenemInputError, match="other settings"):
        denoise_particles(star, cut, model, resume=True, seed=5)
    first = done[0].stat().st_mtime_ns
    out = denoise_particles(star, cut, model, batch_size=7, resume=True)
    assert done[0].stat().st_mtime_ns == first  # kept, not redone
    assert not (cut / apply_mod.UNFINISHED_RECORD).exists()
    assert np.allclose(_images(out, pair_dataset), _images(whole, pair_dataset), atol=1e-4)  # batch 7 vs 4


class _Identity:
    stride = 4
    pixel_size_A = 2.0

    def denoise_normalized(self, x, **kw):
        return x


def test_micrograph_tiling_blends_exactly():
    w = blend_window_1d(8, 0, 0, ramp="linear")
    assert torch.allclose(torch.outer(w, w), torch.ones(8, 8, dtype=torch.float64))
    img = torch.randn(150, 203)
    out = denoise_micrograph(_Identity(), img, 2.0, tile=64, overlap=8)
    assert out.shape == img.shape and torch.allclose(out, img, atol=1e-4)


def test_micrographs_star_and_mrc(tmp_path, tiny_model_dir):
    model = Denoiser.load(tiny_model_dir)
    img = np.random.default_rng(0).normal(size=(100, 140)).astype(np.float32)
    write_mrc(tmp_path / "in" / "Micrographs" / "mic.mrc", img, 4.0)
    out = denoise_micrographs(tmp_path / "in" / "Micrographs" / "mic.mrc", tmp_path / "out", model, tile=64)
    with mrcfile.open(out) as m:
        assert m.data.shape == (100, 140)
    optics = pd.DataFrame([{"rlnOpticsGroup": 1, "rlnMicrographPixelSize": 3.0}])
    mics = pd.DataFrame([{"rlnMicrographName": "Micrographs/mic.mrc", "rlnOpticsGroup": 1, "rlnDefocusU": 1e4}])
    write_star(tmp_path / "in" / "mics.star", {"optics": optics, "micrographs": mics})
    star = denoise_micrographs(tmp_path / "in" / "mics.star", tmp_path / "out2", model, tile=64)
    rows = read_star(star)["micrographs"]
    assert rows["rlnDefocusU"].iloc[0] == 1e4
    with mrcfile.open(tmp_path / "in" / rows["rlnMicrographName"].iloc[0]) as m:
        assert m.data.shape == (100, 140)


def test_read_particle_set_resolves_relion_project_paths(shared_data):
    star = shared_data / "particles" / "betagal_tutorial" / "Extract" / "job009" / "particles.star"
    ps = read_particle_set(star)
    assert ps.box_px == 64 and len(ps.index_of_row) == 2374
    assert np.allclose(ps.pixel_size_A, 3.54)
    assert ps.root == (shared_data / "particles" / "betagal_tutorial").resolve()


def test_resume_removes_stale_temporaries_and_gives_identical_bytes(pair_dataset, tiny_model_dir, tmp_path,
                                                                    monkeypatch):
    """A killed run leaves a temporary stack (SIGKILL skips the clean-up); --resume deletes it, and the resumed
    stacks are byte for byte those of an uninterrupted run (no wall-clock time in the MRC headers)."""
    import time

    model = Denoiser.load(tiny_model_dir)
    star = pair_dataset / "particles.star"
    denoise_particles(star, tmp_path / "whole", model, batch_size=4)
    time.sleep(1.1)  # a header that stamped the time would now differ
    _denoise_interrupted(star, tmp_path / "cut", model, monkeypatch)
    stale = next((tmp_path / "cut" / "Denoised").rglob("mic_000001.mrcs")).with_name("mic_000002.mrcs.tmp-k1ll3d.mrcs")
    stale.write_bytes(b"\0" * 1024)
    denoise_particles(star, tmp_path / "cut", model, batch_size=4, resume=True)
    assert not stale.exists()
    whole = sorted((tmp_path / "whole" / "Denoised").rglob("*.mrcs"))
    cut = sorted((tmp_path / "cut" / "Denoised").rglob("*.mrcs"))
    assert [p.name for p in cut] == [p.name for p in whole] == ["mic_000001.mrcs", "mic_000002.mrcs",
                                                                "mic_000003.mrcs"]
    for a, b in zip(whole, cut):
        assert a.read_bytes() == b.read_bytes(), a.name
