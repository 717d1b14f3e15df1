"""Scipion <-> RELION STAR conversion, checked on real RELION 3.1 STAR files and against pwem's own geometry."""
import os

import numpy as np
import pytest

from genem_scipion import convert


def _random_angles(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-180, 180, n), np.degrees(np.arccos(rng.uniform(-1, 1, n))),
                            rng.uniform(-180, 180, n)])


def test_euler_matrix_matches_pwem_szyz_with_negated_angles():
    """scipion-em-relion builds A as euler_matrix(-rot, -tilt, -psi, 'szyz'); ours is RELION's formula."""
    from pwem.convert.transformations import euler_matrix
    for rot, tilt, psi in _random_angles(50):
        A = convert.euler_to_matrix_relion(rot, tilt, psi)
        B = euler_matrix(*np.radians([-rot, -tilt, -psi]), axes="szyz")[:3, :3]
        np.testing.assert_allclose(A, B, atol=1e-12)
        assert np.allclose(A @ A.T, np.eye(3))


def test_pose_round_trip_through_transform():
    rng = np.random.default_rng(1)
    for (rot, tilt, psi), (ox, oy) in zip(_random_angles(50, 2), rng.uniform(-5, 5, (50, 2))):
        M = convert.relion_to_transform_matrix(rot, tilt, psi, ox, oy)
        r2, t2, p2, ox2, oy2 = convert.transform_matrix_to_relion(M)
        np.testing.assert_allclose(convert.euler_to_matrix_relion(r2, t2, p2),
                                   convert.euler_to_matrix_relion(rot, tilt, psi), atol=1e-9)
        np.testing.assert_allclose([ox2, oy2], [ox, oy], atol=1e-9)


def test_transform_is_inverse_of_relion_projection_with_minus_origin():
    """PLATFORMS.md: Scipion's Transform = inverse of [A_relion | -origin_px]."""
    rot, tilt, psi, ox, oy = 30.0, 60.0, -45.0, 2.5, -1.25
    M = convert.relion_to_transform_matrix(rot, tilt, psi, ox, oy)
    P = np.linalg.inv(M)
    np.testing.assert_allclose(P[:3, :3], convert.euler_to_matrix_relion(rot, tilt, psi), atol=1e-12)
    np.testing.assert_allclose(P[:3, 3], [-ox, -oy, 0.0], atol=1e-12)
    # scipion-em-relion's rowToAlignment(inverseTransform=True) written out with pwem's own functions
    from pwem.convert.transformations import euler_matrix
    R = euler_matrix(*np.radians([-rot, -tilt, -psi]), axes="szyz")
    R[:3, 3] = -np.array([ox, oy, 0.0])
    np.testing.assert_allclose(M, np.linalg.inv(R), atol=1e-12)


def _read_set(star, tmp_path, name="parts.sqlite"):
    from pwem.objects import SetOfParticles
    parts = SetOfParticles(filename=str(tmp_path / name))
    n = convert.particles_from_star(str(star), parts)
    return parts, n


@pytest.mark.parametrize("rel", ["particles/cryodrgn/relion31.star", "particles/cryodrgn/empiar_10076_7.star",
                                 "star/cryodrgn/relion31.6opticsgroups.star"])
def test_particles_star_round_trip(shared_data, tmp_path, rel):
    """RELION STAR -> SetOfParticles -> RELION STAR keeps images, CTF, poses (as matrices) and origins."""
    from pwem.constants import ALIGN_PROJ
    src = shared_data / rel
    original = convert.read_relion_star(str(src), "particles")
    parts, n = _read_set(src, tmp_path)
    assert n == len(original) == parts.getSize()
    assert [p.getObjId() for p in parts.iterItems(orderBy="id")] == list(range(1, n + 1))
    px = convert.pixel_size_from_row(original[0], "rlnImagePixelSize")
    assert px > 0
    assert parts.getSamplingRate() == pytest.approx(px)
    has_pose = "rlnAngleRot" in original[0]
    assert (parts.getAlignment() == ALIGN_PROJ) == has_pose

    out = tmp_path / "back.star"
    convert.particles_to_star(parts, str(out))
    back = convert.read_relion_star(str(out), "particles")
    assert len(back) == n
    for a, b in zip(original, back):
        ia, fa = convert.split_image_name(a["rlnImageName"])
        ib, fb = convert.split_image_name(b["rlnImageName"])
        assert ia == ib and fb == os.path.normpath(str(src.parent / fa))
        for c in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"):
            assert b[c] == pytest.approx(a[c], abs=1e-3)
        if has_pose:
            np.testing.assert_allclose(
                convert.euler_to_matrix_relion(b["rlnAngleRot"], b["rlnAngleTilt"], b["rlnAnglePsi"]),
                convert.euler_to_matrix_relion(a["rlnAngleRot"], a["rlnAngleTilt"], a["rlnAnglePsi"]), atol=1e-5)
            assert b["rlnOriginXAngst"] == pytest.approx(a["rlnOriginXAngst"], abs=1e-4)
            assert b["rlnOriginYAngst"] == pytest.approx(a["rlnOriginYAngst"], abs=1e-4)
        assert b["rlnVoltage"] == pytest.approx(original[0]["rlnVoltage"])


def test_six_optics_groups_give_each_particle_its_acquisition(shared_data, tmp_path):
    src = shared_data / "star/cryodrgn/relion31.6opticsgroups.star"
    rows = convert.read_relion_star(str(src), "particles")
    parts, _ = _read_set(src, tmp_path)
    for row, part in zip(rows, parts.iterItems(orderBy="id")):
        assert part.getAcquisition().getVoltage() == pytest.approx(row["rlnVoltage"])
        assert part.getAcquisition().getSphericalAberration() == pytest.approx(row["rlnSphericalAberration"])


def test_ctf_values_pass_unchanged(shared_data, tmp_path):
    src = shared_data / "particles/cryodrgn/relion31.star"
    rows = convert.read_relion_star(str(src), "particles")
    parts, _ = _read_set(src, tmp_path)
    for row, part in zip(rows, parts.iterItems(orderBy="id")):
        ctf = part.getCTF()
        assert (ctf.getDefocusU(), ctf.getDefocusV(), ctf.getDefocusAngle()) == pytest.approx(
            (row["rlnDefocusU"], row["rlnDefocusV"], row["rlnDefocusAngle"]))


def test_bad_star_names_file_and_problem(tmp_path):
    bad = tmp_path / "bad.star"
    bad.write_text("data_particles\n\nloop_\n_rlnCoordinateX #1\n1.0\n")
    with pytest.raises(convert.StarError, match="bad.star: data_particles lacks column"):
        convert.read_relion_star(str(bad), "particles", required=("rlnImageName",))
    with pytest.raises(convert.StarError, match="missing.star: file not found"):
        convert.read_relion_star(str(tmp_path / "missing.star"), "particles")
