"""The artefact detector flags planted streaks, periodic patterns, tiling seams and drift, and nothing on real-like
micrographs (two regions of a real micrograph; independent draws of isotropic coloured noise)."""
import numpy as np
import pytest
import scipy.ndimage as ndi

from genem.metrics.artefacts import detect_artefacts


def coloured_noise(n_images=3, size=768, seed=0):
    """Isotropic noise with a falling spectrum (a white floor plus blurred noise), like a micrograph's."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        x = ndi.gaussian_filter(rng.normal(size=(size, size)), 2.0) * 6 + rng.normal(size=(size, size))
        out.append((x / x.std()).astype(np.float32))
    return out


def flagged(real, candidate):
    return detect_artefacts(real, candidate)["artefacts"]


def plant(images, kind, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for x in images:
        h, w = x.shape
        yy, xx = np.mgrid[0:h, 0:w]
        if kind == "streaks":      # noise smeared along one direction (30 degrees), 0.4 sd
            s = ndi.gaussian_filter(rng.normal(size=x.shape), (0.6, 8.0))
            s = ndi.rotate(s, 30, reshape=False, mode="wrap")
            add = 0.4 * s / s.std()
        elif kind == "periodic":   # a faint lattice, 0.1 sd, period ~13 px
            add = 0.1 * np.sqrt(2) * np.cos(2 * np.pi * (xx / 17.0 + yy / 21.0))
        elif kind == "seams":      # 192 px tiles offset by +-0.15 sd in a checkerboard (a tiling that did not blend)
            add = 0.15 * (-1.0) ** (yy // 192 + xx // 192)
        elif kind == "drift":      # a slow background ramp, sd ~0.17
            add = 0.3 * (xx / w - 0.5) + 0.3 * (yy / h - 0.5) ** 2
        out.append(x + add)
    return out


@pytest.mark.parametrize("kind, name", [("streaks", "directional_streaks"), ("periodic", "periodic_pattern"),
                                        ("seams", "tiling_seams"), ("drift", "intensity_drift")])
def test_planted_artefacts_are_found_and_only_they(kind, name):
    real = coloured_noise(seed=0)
    found = flagged(real, plant(coloured_noise(seed=7), kind))
    # a lattice is also power in one direction: it may count as a streak too
    assert name in found and set(found) <= {name} | ({"directional_streaks"} if kind == "periodic" else set())


def test_coloured_noise_is_clean_and_findings_carry_numbers():
    rep = detect_artefacts(coloured_noise(seed=0), coloured_noise(seed=7))
    assert rep["artefacts"] == []
    assert {f["name"] for f in rep["findings"]} == {"directional_streaks", "periodic_pattern", "tiling_seams",
                                                    "intensity_drift"}
    for f in rep["findings"]:
        assert np.isfinite([f["value"], f["reference"], f["threshold"]]).all() and f["value"] < f["threshold"]
    assert all(abs(v) < 0.05 for v in rep["radial_log10_ratio"].values())


def test_real_micrograph_regions_are_clean_and_planted_streaks_found(shared_data):
    """Top-left and bottom-right quarters of the real EPU micrograph (2x binned) against the other two."""
    from genem.io.images import read_image
    from genem.translate.data import robust_clip_image

    raw, _ = read_image(shared_data / "micrographs" / "epu2.9_example.mrc")
    x = robust_clip_image(raw).reshape(2048, 2, 2048, 2).mean(axis=(1, 3))
    x = (x - x.mean()) / x.std()
    q = [x[:1024, :1024], x[1024:, 1024:], x[:1024, 1024:], x[1024:, :1024]]
    assert flagged(q[:2], q[2:]) == []
    assert flagged(q[:2], plant(q[2:], "streaks")) == ["directional_streaks"]
