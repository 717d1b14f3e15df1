"""Applying a translator: annotations survive exactly, particles are re-extracted, tiling leaves no seams."""
import numpy as np
import pandas as pd
import pytest
import torch

from genem.io import GenemDataset, GenemInputError, read_mrc
from genem.simulate.extract import extract_boxes, normalise_like_relion
from genem.translate.apply import apply_translator, translate_micrograph
from genem.translate.networks import Generator, GeneratorConfig
from genem.translate.tiling import translate_image_tiled
from genem.translate import load_model


def test_tiled_inference_equals_whole_image_pass():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(base_channels=8, n_down=2, n_blocks=2)).eval()
    x = np.random.default_rng(0).normal(size=(300, 260)).astype(np.float32)
    with torch.no_grad():
        whole = g(torch.from_numpy(np.pad(x, ((0, 4), (0, 4)), mode="reflect"))[None, None]).numpy()[0, 0, :300, :260]
    tiled = translate_image_tiled(g, x, tile_px=128, context_px=40, blend_px=16)
    assert tiled.shape == x.shape
    # away from the image border (where padding differs), tiling reproduces the single pass: no seams
    inner = (slice(48, 252), slice(48, 212))
    np.testing.assert_allclose(tiled[inner], whole[inner], atol=1e-5)
    # a too-small context is still blended smoothly: differences stay small, no tile edges stand out
    rough = translate_image_tiled(g, x, tile_px=64, context_px=4, blend_px=16)
    assert np.abs(rough[inner] - whole[inner]).max() < 0.5 * np.abs(whole[inner]).max()
    with pytest.raises(ValueError, match="multiple of 4"):
        translate_image_tiled(g, x, tile_px=130)


def test_apply_carries_annotations_exactly(quick_model, tiny_sim, tmp_path):
    out = apply_translator(quick_model, tiny_sim, tmp_path / "translated")
    src, dst = GenemDataset.open(tiny_sim), GenemDataset.open(out)
    # coordinates, poses, CTF, image names: identical tables
    pd.testing.assert_frame_equal(src.particles(), dst.particles())
    pd.testing.assert_frame_equal(src.micrographs(), dst.micrographs())
    cols = ["rlnCoordinateX", "rlnCoordinateY", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
            "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]
    np.testing.assert_array_equal(src.particles()[cols].to_numpy(), dst.particles()[cols].to_numpy())
    for sub in ("Coordinates", "Masks", "Clean", "Ice", "ParticlesClean", "ground_truth"):
        for f in sorted((tiny_sim / sub).iterdir()):
            assert (out / sub / f.name).read_bytes() == f.read_bytes(), f
    g, meta = load_model(quick_model)
    parts = dst.particles()
    for name in dst.micrographs()["rlnMicrographName"]:
        before = src.read_micrograph(name)
        after = dst.read_micrograph(name)
        assert after.shape == before.shape and not np.allclose(after, before)
        assert abs(after.mean()) < 1e-3 and abs(after.std() - 1) < 1e-3
        np.testing.assert_allclose(after, translate_micrograph(g, before), atol=1e-5)
        rows = parts[parts["rlnMicrographName"] == name]
        imgs = dst.read_particle_images(rows)
        ref = normalise_like_relion(extract_boxes(after, rows["rlnCoordinateX"], rows["rlnCoordinateY"], 48))
        np.testing.assert_allclose(imgs, ref, atol=1e-5)  # re-extracted from the translated micrograph
        assert not np.allclose(imgs, src.read_particle_images(rows))
    man = dst.manifest
    assert man["kind"] == "genem-translation" and man["translation"]["model_pixel_size_A"] == 2.0
    assert man["config"] == src.manifest["config"]
    # the finished folder is not overwritten, and the input is refused as output
    with pytest.raises(GenemInputError, match="already holds a finished dataset"):
        apply_translator(quick_model, tiny_sim, out)
    with pytest.raises(GenemInputError, match="must not be the simulated folder"):
        apply_translator(quick_model, tiny_sim, tiny_sim / "inside")


def test_apply_resumes_after_interruption(quick_model, tiny_sim, tmp_path):
    out = tmp_path / "t"
    full = apply_translator(quick_model, tiny_sim, tmp_path / "full")
    apply_translator(quick_model, tiny_sim, out)
    # simulate a crash after the first micrograph: drop the second one's record and the completion mark
    (out / "manifest.json").unlink()
    (out / ".parts" / "translate_mic_000002.json").unlink()
    (out / "Micrographs" / "mic_000002.mrc").unlink()
    with pytest.raises(GenemInputError):
        GenemDataset.open(out)  # not finished: no manifest
    apply_translator(quick_model, tiny_sim, out)
    a = read_mrc(out / "Micrographs" / "mic_000002.mrc")[0]
    b = read_mrc(full / "Micrographs" / "mic_000002.mrc")[0]
    np.testing.assert_array_equal(a, b)
