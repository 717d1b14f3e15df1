"""STAR <-> cryoSPARC .cs conversion (genem_cryosparc.convert): conventions checked against real cryoSPARC files."""

import numpy as np
import pandas as pd
import pytest
from cryosparc.dataset import Dataset

from genem.io import GenemInputError, read_particles_star, write_star
from genem.physics.rotations import euler_to_matrix_relion
from genem_cryosparc.convert import (
    SLOT_FIELDS, UID_COLUMN, cs_dataset_to_star, euler_relion_from_pose_rotvec, merge_into,
    pose_rotvec_from_euler_relion, star_to_cs_dataset,
)


def _rodrigues_pyem(e):
    """Independent pose formula (as pyem's geom.expmap writes it): returns the RELION matrix A directly."""
    theta = np.linalg.norm(e)
    if theta < 1e-12:
        return np.eye(3)
    w = e / theta
    k = np.array([[0, w[2], -w[1]], [-w[2], 0, w[0]], [w[1], -w[0], 0]])
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


def _synthetic(n=12, seed=0):
    rng = np.random.default_rng(seed)
    optics = pd.DataFrame({
        "rlnOpticsGroupName": ["opticsGroup1", "opticsGroup2"], "rlnOpticsGroup": [1, 2],
        "rlnMicrographOriginalPixelSize": [1.5, 1.5], "rlnVoltage": [300.0, 200.0],
        "rlnSphericalAberration": [2.7, 2.0], "rlnAmplitudeContrast": [0.1, 0.07],
        "rlnImagePixelSize": [1.5, 1.5], "rlnImageSize": [64, 64], "rlnImageDimensionality": [2, 2],
    })
    eul = np.stack([rng.uniform(-180, 180, n), rng.uniform(5, 175, n), rng.uniform(-180, 180, n)], -1)
    parts = pd.DataFrame({
        "rlnMicrographName": [f"Micrographs/mic_{i % 3 + 1:06d}.mrc" for i in range(n)],
        "rlnCoordinateX": rng.integers(0, 1000, n).astype(float),   # width 1000 (columns)
        "rlnCoordinateY": rng.integers(0, 600, n).astype(float),    # height 600 (rows)
        "rlnImageName": [f"{i // 3 + 1:06d}@Particles/mic_{i % 3 + 1:06d}.mrcs" for i in range(n)],
        "rlnOpticsGroup": [1 + (i % 2) for i in range(n)],
        "rlnDefocusU": rng.uniform(8000, 30000, n), "rlnDefocusV": rng.uniform(8000, 30000, n),
        "rlnDefocusAngle": rng.uniform(-180, 180, n), "rlnPhaseShift": np.zeros(n), "rlnCtfBfactor": np.zeros(n),
        "rlnAngleRot": eul[:, 0], "rlnAngleTilt": eul[:, 1], "rlnAnglePsi": eul[:, 2],
        "rlnOriginXAngst": rng.uniform(-6, 6, n), "rlnOriginYAngst": rng.uniform(-6, 6, n),
        "rlnRandomSubset": [1 + (i % 2) for i in range(n)], "rlnClassNumber": np.ones(n, int),
    })
    return optics, parts


def test_pose_matches_independent_pyem_formula_and_inverts():
    rng = np.random.default_rng(1)
    eul = np.stack([rng.uniform(-180, 180, 50), rng.uniform(1, 179, 50), rng.uniform(-180, 180, 50)], -1)
    pose = pose_rotvec_from_euler_relion(*eul.T)
    A = euler_to_matrix_relion(*eul.T)
    for p, a in zip(pose, A):
        assert np.allclose(_rodrigues_pyem(p), a, atol=1e-9)
    back = euler_relion_from_pose_rotvec(pose)
    assert np.allclose(euler_to_matrix_relion(*back.T), A, atol=1e-9)
    # the transpose (the usual mistake) is a different rotation for general angles
    assert np.abs(_rodrigues_pyem(pose[0]) - A[0].T).max() > 0.1


def test_ctf_conventions_match_cryosparc_import_of_the_same_star(shared_data):
    """cryoSPARC's Import Particles made empiar_10076_7.cs from empiar_10076_7.star: our STAR->cs must agree."""
    folder = shared_data / "particles" / "cryodrgn"
    _, parts = read_particles_star(folder / "empiar_10076_7.star")
    real = Dataset.load(folder / "empiar_10076_7.cs")
    psize = float(real["blob/psize_A"][0])
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7],
                           "rlnAmplitudeContrast": [0.07], "rlnImagePixelSize": [psize], "rlnImageSize": [320]})
    parts = parts.assign(rlnOpticsGroup=1)
    ours = star_to_cs_dataset(optics, parts)
    assert len(ours) == len(real) == 7
    for f in ("blob/idx", "blob/shape", "blob/psize_A", "blob/sign", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast",
              "ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad", "ctf/phase_shift_rad"):
        np.testing.assert_allclose(np.asarray(ours[f], float), np.asarray(real[f], float), rtol=1e-6, err_msg=f)
    assert list(ours["blob/path"]) == list(real["blob/path"])
    # and back: the STAR values come out again
    _, star = cs_dataset_to_star(real)
    np.testing.assert_allclose(star["rlnDefocusAngle"], parts["rlnDefocusAngle"], atol=1e-4)
    assert list(star["rlnImageName"].str.split("@").str[0].astype(int)) == list(range(1, 8))


def _assert_same_dataset(a: Dataset, b: Dataset, pose_fields=("alignments3D/pose",)):
    """Every field of ``b`` is in ``a`` with the same dtype and values; ``a`` may complete a slot with defaults."""
    assert len(a) == len(b)
    assert set(b.fields()) <= set(a.fields()), set(b.fields()) - set(a.fields())
    for f in set(a.fields()) - set(b.fields()):
        slot, name = f.split("/", 1)
        assert name in {s[0] for s in SLOT_FIELDS[slot]}, f
        assert np.all(np.isin(np.asarray(a[f]), [0, 1])), f
    for f in b.fields():
        x, y = np.asarray(a[f]), np.asarray(b[f])
        assert x.dtype == y.dtype, f
        if f in pose_fields:
            Ra = np.array([_rodrigues_pyem(p) for p in x.astype(float)])
            Rb = np.array([_rodrigues_pyem(p) for p in y.astype(float)])
            assert np.abs(Ra - Rb).max(initial=0.0) < 1e-5, f
        elif x.dtype == object:
            assert list(x) == list(y), f
        elif x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-4, err_msg=f)
        else:
            assert np.array_equal(x, y), f


@pytest.mark.parametrize("name", ["cryodrgn/cryosparc_P12_J24_001_particles.cs",
                                  "cryodrgn/cryosparc_J2_particles_exported.cs",
                                  "cryosparc_tools/4k_dataset_schema_only.cs"])
def test_real_cs_round_trip_through_star_file_keeps_every_field(shared_data, tmp_path, name):
    """.cs -> STAR file (what the engine reads) -> .cs, passthrough merged by uid: nothing lost or changed."""
    real = Dataset.load(shared_data / "cs" / name)
    if "blob/path" not in real.fields():  # the 106-field schema has no images: an error, unless a blob is added
        with pytest.raises(GenemInputError, match="field blob/path missing"):
            cs_dataset_to_star(real)
        real.add_fields([("blob/path", "O"), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
                         ("blob/psize_A", "<f4"), ("blob/sign", "<f4")])
    optics, parts = cs_dataset_to_star(real)
    write_star(tmp_path / "p.star", {"optics": optics, "particles": parts})
    optics2, parts2 = read_particles_star(tmp_path / "p.star")
    prefix = ">" if len(real) and str(real["blob/path"][0]).startswith(">") else ""
    back = star_to_cs_dataset(optics2, parts2, path_prefix=prefix)
    assert back["uid"].dtype == np.uint64 and np.array_equal(back["uid"], real["uid"])
    slots = [s for s in ("blob", "ctf", "alignments3D") if s in real.prefixes()]
    merged = merge_into(real, back, slots=slots)
    _assert_same_dataset(merged, real)
    if name.endswith("P12_J24_001_particles.cs"):
        # the slots we write ourselves carry exactly cryoSPARC's dtypes
        for slot in ("blob", "ctf"):
            for spec in SLOT_FIELDS[slot]:
                f = f"{slot}/{spec[0]}"
                if f in real.fields():
                    assert back[f].dtype == real[f].dtype, f


def test_synthetic_rows_round_trip_with_locations_and_indices(tmp_path):
    optics, parts = _synthetic()
    d = star_to_cs_dataset(optics, parts, micrograph_shape_px=(600, 1000))
    assert set(d.prefixes()) == {"blob", "ctf", "alignments3D", "location"}
    assert len(d) == len(parts)
    # 1-based STAR index -> 0-based blob/idx; [height, width]; fractions against the right axis
    assert list(d["blob/idx"]) == [i // 3 for i in range(len(parts))]
    assert d["location/micrograph_shape"].tolist()[0] == [600, 1000]
    np.testing.assert_allclose(d["location/center_x_frac"], parts["rlnCoordinateX"] / 1000, rtol=1e-6)
    np.testing.assert_allclose(d["location/center_y_frac"], parts["rlnCoordinateY"] / 600, rtol=1e-6)
    np.testing.assert_allclose(d["ctf/df_angle_rad"], np.deg2rad(parts["rlnDefocusAngle"]), rtol=1e-6)
    np.testing.assert_allclose(d["alignments3D/shift"][:, 0], parts["rlnOriginXAngst"] / 1.5, rtol=1e-5)
    np.testing.assert_allclose(d["alignments3D/shift"][:, 1], parts["rlnOriginYAngst"] / 1.5, rtol=1e-5)
    assert list(d["alignments3D/split"]) == [i % 2 for i in range(len(parts))]
    assert list(d["ctf/exp_group_id"]) == [i % 2 for i in range(len(parts))]
    assert float(d["ctf/scale"][0]) == 1.0 and float(d["alignments3D/class_posterior"][0]) == 1.0
    # deterministic uids: the same rows give the same ids
    assert np.array_equal(d["uid"], star_to_cs_dataset(optics, parts, micrograph_shape_px=(600, 1000))["uid"])

    d.save(tmp_path / "x.cs")
    o2, p2 = cs_dataset_to_star(Dataset.load(tmp_path / "x.cs"))
    assert list(p2["rlnImageName"]) == list(parts["rlnImageName"])
    assert list(p2["rlnMicrographName"]) == list(parts["rlnMicrographName"])
    np.testing.assert_allclose(p2["rlnCoordinateX"], parts["rlnCoordinateX"], atol=1e-3)
    np.testing.assert_allclose(p2["rlnCoordinateY"], parts["rlnCoordinateY"], atol=1e-3)
    for c in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOriginXAngst", "rlnOriginYAngst"):
        np.testing.assert_allclose(p2[c], parts[c], rtol=1e-5, atol=1e-3, err_msg=c)
    A1 = euler_to_matrix_relion(parts["rlnAngleRot"], parts["rlnAngleTilt"], parts["rlnAnglePsi"])
    A2 = euler_to_matrix_relion(p2["rlnAngleRot"], p2["rlnAngleTilt"], p2["rlnAnglePsi"])
    assert np.abs(A1 - A2).max() < 1e-5
    assert list(p2["rlnRandomSubset"]) == list(parts["rlnRandomSubset"])
    assert list(p2["rlnOpticsGroup"]) == list(parts["rlnOpticsGroup"])
    assert sorted(o2["rlnVoltage"]) == [200.0, 300.0]
    g2 = o2.set_index("rlnOpticsGroup")
    assert g2.loc[2, "rlnVoltage"] == 200.0 and g2.loc[2, "rlnSphericalAberration"] == pytest.approx(2.0)


def test_paths_are_rebased_between_star_folder_and_project(tmp_path):
    optics, parts = _synthetic(3)
    project = tmp_path / "proj"
    star_root = project / "J5" / "genem"
    d = star_to_cs_dataset(optics, parts, project_root=project, star_root=star_root)
    assert d["blob/path"][0] == "J5/genem/Particles/mic_000001.mrcs"
    o, p = cs_dataset_to_star(d, project_root=project, star_root=project / "elsewhere")
    assert p["rlnImageName"][0] == "000001@../J5/genem/Particles/mic_000001.mrcs"
    d2 = star_to_cs_dataset(optics, parts, path_prefix=">")
    assert d2["blob/path"][0] == ">Particles/mic_000001.mrcs"
    o, p = cs_dataset_to_star(d2, project_root=tmp_path / "export", star_root=tmp_path)
    assert p["rlnImageName"][0] == "000001@export/Particles/mic_000001.mrcs"


def test_merge_keeps_passthrough_and_rejects_unknown_rows():
    optics, parts = _synthetic(6)
    base = star_to_cs_dataset(optics, parts, micrograph_shape_px=(600, 1000))
    base.add_fields([("pick_stats/ncc_score", "f4")])
    base["pick_stats/ncc_score"] = np.arange(6, dtype=np.float32)
    new = star_to_cs_dataset(optics, parts.assign(rlnImageName=[f"{i + 1:06d}@D/x.mrcs" for i in range(6)],
                                                  **{UID_COLUMN: [f"0x{int(u):016x}" for u in base["uid"]]}))
    sub = new.take(np.array([4, 1]))
    m = merge_into(base, sub, slots=["blob"])
    assert list(m["blob/path"]) == ["D/x.mrcs", "D/x.mrcs"] and list(m["blob/idx"]) == [4, 1]
    assert list(m["pick_stats/ncc_score"]) == [4.0, 1.0]
    assert list(m["location/micrograph_path"]) == [parts["rlnMicrographName"][4], parts["rlnMicrographName"][1]]
    stranger = star_to_cs_dataset(optics, parts.assign(rlnImageName=[f"{i + 1:06d}@Z.mrcs" for i in range(6)]))
    with pytest.raises(GenemInputError, match="uids not in the input"):
        merge_into(base, stranger, slots=["blob"])


def test_bad_input_names_the_source():
    optics, parts = _synthetic(3)
    with pytest.raises(GenemInputError, match="in.star: column rlnImageName missing"):
        star_to_cs_dataset(optics, parts.drop(columns="rlnImageName"), source="in.star")
    with pytest.raises(GenemInputError, match="rlnImagePixelSize"):
        star_to_cs_dataset(None, parts, source="in.star")
    with pytest.raises(GenemInputError, match="x.cs: field blob/path missing"):
        cs_dataset_to_star(Dataset.allocate(2, [("ctf/df1_A", "f4")]), source="x.cs")
