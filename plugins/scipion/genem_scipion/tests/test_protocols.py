"""GenEM protocols in a headless Scipion project, the engine running in its own environment (GENEM_PYTHON).

Checks the outputs' sizes, sampling rates, ids and alignments, that the simulated particles' alignments taken back
out of the Scipion set reconstruct (relion_reconstruct) to the ground-truth volume, and that bad input ends in
Scipion's failed state with the engine's one-line error."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

N_MICS, MIC_PX, BOX, PER_MIC, PIXEL_A = 2, 384, 48, 40, 3.0


def _launch(project, prot):
    project.launchProtocol(prot, wait=True)
    return project.getProtocol(prot.getObjId())  # reload: the run happened in another process


@pytest.fixture(scope="module")
def plugin(engine_python):
    from genem_scipion import Plugin
    if not Plugin.engineHasCommand("simulate"):
        pytest.skip("the GenEM engine at GENEM_PYTHON=%s has no 'simulate' command" % engine_python)
    return Plugin


@pytest.fixture(scope="module")
def simulation(project, plugin):
    from genem_scipion.protocols import ProtGenemSimulate
    prot = project.newProtocol(ProtGenemSimulate, objLabel="simulate", nMicrographs=N_MICS, micrographSize=MIC_PX,
                               boxSize=BOX, particlesPerMic=PER_MIC, pixelSize=PIXEL_A, noiseMode=2, seed=1)
    prot = _launch(project, prot)
    assert prot.isFinished(), "simulate failed: %s" % prot.getErrorMessage()
    return prot


def test_simulate_outputs(simulation):
    from pwem.constants import ALIGN_PROJ
    from genem_scipion import convert
    prot = simulation
    mics, ctfs, coords = prot.outputMicrographs, prot.outputCTF, prot.outputCoordinates
    parts, vol = prot.outputParticles, prot.outputVolume
    n = N_MICS * PER_MIC
    assert mics.getSize() == N_MICS and mics.getSamplingRate() == pytest.approx(PIXEL_A)
    assert mics.getDim()[:2] == (MIC_PX, MIC_PX)
    assert mics.getAcquisition().getVoltage() == pytest.approx(300.0)
    assert ctfs.getSize() == N_MICS
    assert coords.getSize() == n and coords.getBoxSize() == BOX
    assert parts.getSize() == n and parts.getSamplingRate() == pytest.approx(PIXEL_A)
    assert parts.getXDim() == BOX and parts.getAlignment() == ALIGN_PROJ and parts.hasCTF()
    assert [p.getObjId() for p in parts.iterItems(orderBy="id")] == list(range(1, n + 1))
    assert vol.getSamplingRate() == pytest.approx(PIXEL_A) and os.path.exists(vol.getFileName())
    summary, methods = " ".join(prot.summary()), " ".join(prot.methods())
    assert "%d particles" % n in summary and "2 micrographs" in summary, summary
    assert "GenEM" in methods and "%d particles" % n in methods, methods
    logs = "".join(open(f, errors="replace").read() for f in prot.getLogPaths()[:2] if os.path.exists(f))
    assert "simulate: %d/%d mic (100%%)" % (N_MICS, N_MICS) in logs, logs[-2000:]  # engine progress in the log

    # every value against the engine's own STAR files
    dataset = prot._getExtraPath("dataset")
    mic_rows = convert.read_relion_star(os.path.join(dataset, "micrographs.star"), "micrographs")
    for row, ctf in zip(mic_rows, ctfs.iterItems(orderBy="id")):
        assert (ctf.getDefocusU(), ctf.getDefocusV(), ctf.getDefocusAngle()) == pytest.approx(
            (row["rlnDefocusU"], row["rlnDefocusV"], row["rlnDefocusAngle"]))
        assert ctf.getMicrograph().getMicName() == os.path.basename(row["rlnMicrographName"])
    rows = convert.read_relion_star(os.path.join(dataset, "particles.star"), "particles")
    mic_ids = {os.path.basename(r["rlnMicrographName"]): i for i, r in enumerate(mic_rows, 1)}
    for row, part, coord in zip(rows, parts.iterItems(orderBy="id"), coords.iterItems(orderBy="id")):
        index, fn = part.getLocation()
        assert (index, os.path.abspath(fn)) == (convert.split_image_name(row["rlnImageName"])[0],
                                                os.path.abspath(os.path.join(dataset, convert.split_image_name(
                                                    row["rlnImageName"])[1])))
        M = part.getTransform().getMatrix()
        P = np.linalg.inv(M)  # Scipion Transform = inverse of [A | -origin_px]
        np.testing.assert_allclose(P[:3, :3], convert.euler_to_matrix_relion(
            row["rlnAngleRot"], row["rlnAngleTilt"], row["rlnAnglePsi"]), atol=1e-5)
        np.testing.assert_allclose(-P[:2, 3], [row["rlnOriginXAngst"] / PIXEL_A, row["rlnOriginYAngst"] / PIXEL_A],
                                   atol=1e-5)
        assert part.getCTF().getDefocusU() == pytest.approx(row["rlnDefocusU"])
        assert part.getMicId() == mic_ids[os.path.basename(row["rlnMicrographName"])] == coord.getMicId()
        assert coord.getPosition() == (int(round(row["rlnCoordinateX"])), int(round(row["rlnCoordinateY"])))


def test_simulate_from_input_volume(project, simulation):
    """A Scipion Volume as the specimen: the map and its sampling rate reach the engine."""
    import mrcfile
    from genem_scipion.protocols import ProtGenemSimulate
    prot = project.newProtocol(ProtGenemSimulate, objLabel="from volume", nMicrographs=1, micrographSize=192,
                               boxSize=BOX, particlesPerMic=3, pixelSize=PIXEL_A, noiseMode=2, seed=2)
    prot.inputVolume.set(simulation)
    prot.inputVolume.setExtended("outputVolume")
    prot = _launch(project, prot)
    assert prot.isFinished(), prot.getErrorMessage()
    assert prot.outputParticles.getSize() == 3 and prot.outputMicrographs.getSize() == 1
    manifest = json.load(open(prot._getExtraPath("dataset", "manifest.json")))
    (spec,) = manifest["config"]["structures"]
    assert os.path.samefile(spec["path"], simulation.outputVolume.getFileName())
    assert spec["map_pixel_size_A"] == pytest.approx(PIXEL_A)
    assert mrcfile.read(prot.outputVolume.getFileName()).shape == mrcfile.read(
        simulation.outputVolume.getFileName()).shape


def _reconstruct(star, out_mrc, cwd=None):
    import mrcfile
    subprocess.run(["relion_reconstruct", "--i", star, "--o", out_mrc, "--ctf"], check=True, cwd=cwd,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    return mrcfile.read(out_mrc).astype(np.float64)


def _cc(rec, gt, max_freq=None):
    """Correlation of two maps (both centred at N//2; the larger is cropped), optionally low-passed to
    ``max_freq`` cycles/pixel."""
    n, o = gt.shape[0], (rec.shape[0] - gt.shape[0]) // 2
    rec = rec[o:o + n, o:o + n, o:o + n]
    if max_freq is not None:
        k = np.fft.fftfreq(n)
        keep = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2) < max_freq
        rec, gt = (np.real(np.fft.ifftn(np.fft.fftn(v) * keep)) for v in (rec, gt))
    a, b = rec.ravel() - rec.mean(), gt.ravel() - gt.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _altered_star(src, dst, alter):
    from genem_scipion import convert
    optics = convert.read_star_block(src, "optics")
    rows = convert.read_star_block(src, "particles")
    for r in rows:
        alter(r)
    convert.write_star(dst, {"optics": optics, "particles": rows})
    return dst


@pytest.mark.skipif(shutil.which("relion_reconstruct") is None, reason="RELION (relion_reconstruct) not installed")
def test_scipion_alignments_reconstruct_ground_truth(simulation, tmp_path):
    """The poses taken back out of the Scipion set (Transform -> RELION) reconstruct to the ground truth, exactly as
    well as the engine's own STAR does; convention errors (rotation transposed, origins negated) do not."""
    import mrcfile
    from genem_scipion import convert
    gt = mrcfile.read(os.path.abspath(simulation.outputVolume.getFileName())).astype(np.float64)
    star = str(tmp_path / "from_scipion.star")
    convert.particles_to_star(simulation.outputParticles, star)
    rec = _reconstruct(star, str(tmp_path / "rec.mrc"))
    dataset = os.path.abspath(simulation._getExtraPath("dataset"))
    rec_engine = _reconstruct("particles.star", str(tmp_path / "rec_engine.mrc"), cwd=dataset)

    def transpose(r):
        A = convert.euler_to_matrix_relion(r["rlnAngleRot"], r["rlnAngleTilt"], r["rlnAnglePsi"])
        r["rlnAngleRot"], r["rlnAngleTilt"], r["rlnAnglePsi"] = convert.matrix_to_euler_relion(A.T)

    def negate_origin(r):
        r["rlnOriginXAngst"], r["rlnOriginYAngst"] = -r["rlnOriginXAngst"], -r["rlnOriginYAngst"]

    rec_t = _reconstruct(_altered_star(star, str(tmp_path / "t.star"), transpose), str(tmp_path / "t.mrc"))
    rec_o = _reconstruct(_altered_star(star, str(tmp_path / "o.star"), negate_origin), str(tmp_path / "o.mrc"))
    lp = 1.0 / 20.0 * PIXEL_A  # 20 A: what 80 particles support
    cc = {"scipion": (_cc(rec, gt, lp), _cc(rec, gt)), "engine": (_cc(rec_engine, gt, lp), _cc(rec_engine, gt)),
          "transposed": (_cc(rec_t, gt, lp), _cc(rec_t, gt)), "origins negated": (_cc(rec_o, gt, lp), _cc(rec_o, gt))}
    print("reconstruction CC vs ground truth (20 A low-pass, full band): "
          + ", ".join("%s %.3f, %.3f" % (k, *v) for k, v in cc.items()))
    assert abs(cc["scipion"][1] - cc["engine"][1]) < 0.005
    assert cc["scipion"][0] > 0.7
    assert cc["scipion"][0] - cc["transposed"][0] > 0.2
    assert cc["scipion"][1] - cc["origins negated"][1] > 0.2


def test_montage_viewer(project, simulation):
    from PIL import Image
    from genem_scipion.viewers import GenemMontageViewer
    views = GenemMontageViewer(project=project, protocol=simulation)._visualize(simulation)
    png = views[0].getImagePath()
    with Image.open(png) as im:
        assert im.size[0] > 400 and im.size[1] > 400
        arr = np.asarray(im.convert("L"), dtype=float)
    assert arr.std() > 10  # not a blank canvas


def test_failing_protocol_ends_failed_with_readable_error(project, plugin, tmp_path):
    from genem_scipion.protocols import ProtGenemSimulate
    bad = tmp_path / "not_a_model.pdb"
    bad.write_text("this is not a PDB file\n")
    prot = project.newProtocol(ProtGenemSimulate, objLabel="bad input", nMicrographs=1, micrographSize=128,
                               boxSize=32, particlesPerMic=2, structureFile=str(bad))
    assert prot.validate() == []  # the file exists with a model extension: only the engine can tell
    prot = _launch(project, prot)
    assert prot.isFailed()
    msg = prot.getErrorMessage()
    assert "not_a_model.pdb" in msg and "no atoms" in msg, msg
    assert not hasattr(prot, "outputParticles")


def test_validate_rejects_odd_box_and_missing_file(project):
    from genem_scipion.protocols import ProtGenemSimulate
    prot = project.newProtocol(ProtGenemSimulate, boxSize=33, structureFile="/nonexistent/model.pdb")
    errors = " ".join(prot.validate())
    assert "must be even" in errors and "not found: /nonexistent/model.pdb" in errors


def _engine(plugin, *args):
    """Run the engine's CLI directly (test set-up only), as the protocols do."""
    env = dict(plugin.getEnviron())
    proc = subprocess.run([os.environ["GENEM_PYTHON"], "-m", "genem", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def tiny_denoiser(plugin, simulation, tmp_path_factory):
    """A denoising model trained for a few steps on the simulation (the engine's own tests check learning)."""
    if not plugin.engineHasCommand("denoise", "apply"):
        pytest.skip("the GenEM engine has no 'denoise apply' command yet")
    model = tmp_path_factory.mktemp("denoiser") / "model"
    _engine(plugin, "denoise", "train", "--data", os.path.abspath(simulation._getExtraPath("dataset")),
            "--out", model, "--steps", 3, "--post-steps", 2, "--batch-size", 4, "--crop", 32, "--channels", 8,
            "--post-channels", 8, "--sample-steps", 2, "--checkpoint-every", 1000, "--no-progress")
    return model


def test_denoise_keeps_ids_alignment_ctf_and_sampling(project, plugin, simulation, tiny_denoiser):
    from pwem.objects import SetOfParticles
    from genem_scipion.protocols import ProtGenemDenoise
    import mrcfile
    prot = project.newProtocol(ProtGenemDenoise, objLabel="denoise", modelFile=str(tiny_denoiser), useGpu=False)
    prot.inputParticles.set(simulation)
    prot.inputParticles.setExtended("outputParticles")
    prot = _launch(project, prot)
    assert prot.isFinished(), prot.getErrorMessage()
    inp, out = simulation.outputParticles, prot.outputParticles
    assert isinstance(out, SetOfParticles)
    assert out.getSize() == inp.getSize() and out.getSamplingRate() == inp.getSamplingRate()
    assert out.getAlignment() == inp.getAlignment() and out.hasCTF() and out.getXDim() == inp.getXDim()
    for a, b in zip(inp.iterItems(orderBy="id"), out.iterItems(orderBy="id")):
        assert a.getObjId() == b.getObjId()
        np.testing.assert_allclose(a.getTransform().getMatrix(), b.getTransform().getMatrix())
        assert (a.getCTF().getDefocusU(), a.getCTF().getDefocusAngle()) == \
            (b.getCTF().getDefocusU(), b.getCTF().getDefocusAngle())
        assert os.path.abspath(b.getFileName()) != os.path.abspath(a.getFileName())
    # the output points at the engine's new images, not at the input's
    last = out.getLastItem() if hasattr(out, "getLastItem") else list(out.iterItems(orderBy="id"))[-1]
    for item in (out.getFirstItem(), last):
        src = inp[item.getObjId()]
        with mrcfile.mmap(item.getFileName(), permissive=True) as m:
            den = np.asarray(m.data[item.getIndex() - 1], dtype=float)
        with mrcfile.mmap(src.getFileName(), permissive=True) as m:
            raw = np.asarray(m.data[src.getIndex() - 1], dtype=float)
        assert den.shape == raw.shape and np.all(np.isfinite(den)) and not np.allclose(den, raw)
    from genem_scipion.viewers.viewer_montage import protocol_montage
    assert os.path.getsize(protocol_montage(prot)) > 1000


def test_translate_outputs(project, plugin, simulation, shared_data, tmp_path):
    """Real micrographs imported the Scipion way + the simulation -> translated dataset with the simulation's
    annotations (a few training steps: this checks the plumbing, the engine's tests check the learning)."""
    from pwem.protocols import ProtImportMicrographs
    from genem_scipion.protocols import ProtGenemTranslate
    if not plugin.engineHasCommand("translate", "train"):
        pytest.skip("the GenEM engine has no 'translate train' command yet")
    import mrcfile
    # a 1536 px corner of the real EPU micrograph keeps the test quick (the engine resamples it to 3 A/px)
    real = tmp_path / "epu_crop.mrc"
    with mrcfile.mmap(str(shared_data / "micrographs" / "epu2.9_example.mrc"), permissive=True) as m:
        crop = np.asarray(m.data[:1536, :1536], dtype=np.float32)
    with mrcfile.new(str(real)) as m:
        m.set_data(crop)
        m.voxel_size = 0.667
    imp = project.newProtocol(ProtImportMicrographs, objLabel="import real", filesPath=str(real.parent),
                              filesPattern=real.name, samplingRate=0.667, voltage=300.0,
                              sphericalAberration=2.7, amplitudeContrast=0.1)
    imp = _launch(project, imp)
    assert imp.isFinished(), imp.getErrorMessage()
    prot = project.newProtocol(ProtGenemTranslate, objLabel="translate", trainSteps=2, tileSize=64, batchSize=2,
                               useGpu=False)
    prot.inputMicrographs.set(imp)
    prot.inputMicrographs.setExtended("outputMicrographs")
    prot.inputSimulation.set(simulation)
    assert prot.validate() == []
    prot = _launch(project, prot)
    assert prot.isFinished(), prot.getErrorMessage()
    sim_parts, parts = simulation.outputParticles, prot.outputParticles
    assert prot.outputMicrographs.getSize() == N_MICS
    assert prot.outputMicrographs.getSamplingRate() == pytest.approx(PIXEL_A)
    assert parts.getSize() == sim_parts.getSize() and parts.getSamplingRate() == pytest.approx(PIXEL_A)
    for a, b in zip(sim_parts.iterItems(orderBy="id"), parts.iterItems(orderBy="id")):
        assert a.getObjId() == b.getObjId()
        np.testing.assert_allclose(a.getTransform().getMatrix(), b.getTransform().getMatrix(), atol=1e-6)
        assert a.getCTF().getDefocusU() == pytest.approx(b.getCTF().getDefocusU())
    for a, b in zip(simulation.outputMicrographs.iterItems(orderBy="id"),
                    prot.outputMicrographs.iterItems(orderBy="id")):
        assert a.getMicName() == b.getMicName() and os.path.abspath(a.getFileName()) != os.path.abspath(b.getFileName())


# ------------------------------------------------------------------------------------------------ picking
PICK_DIAMETER_A = 120.0


def _snapshot(folder):
    return {p: os.stat(os.path.join(folder, p)).st_mtime_ns for p in os.listdir(folder)}


def test_pick_coordinates_are_the_engines_picks(project, plugin, simulation):
    """The DoG picker on the simulated micrographs: the SetOfCoordinates read back equals the engine's own picks
    (whole pixels, as Scipion stores them) on the right micrographs; the box follows the diameter; the input
    micrographs' folder is untouched; the engine's progress reaches the log."""
    from genem_scipion import convert
    from genem_scipion.protocols import ProtGenemPick
    if not plugin.engineHasCommand("pick", "apply"):
        pytest.skip("the GenEM engine has no 'pick apply' command")
    mics = simulation.outputMicrographs
    mic_dir = os.path.dirname(os.path.abspath(mics.getFirstItem().getFileName()))
    before = _snapshot(mic_dir)
    prot = project.newProtocol(ProtGenemPick, objLabel="pick", diameter=PICK_DIAMETER_A, threshold=0.0)
    prot.inputMicrographs.set(simulation)
    prot.inputMicrographs.setExtended("outputMicrographs")
    prot = _launch(project, prot)
    assert prot.isFinished(), prot.getErrorMessage()
    coords = prot.outputCoordinates
    assert coords.getBoxSize() == convert.pick_box_px(PICK_DIAMETER_A, PIXEL_A) == 60
    summary = json.load(open(prot._getExtraPath("picks", "picks.json")))
    ids = {os.path.abspath(convert.strip_scipion_suffix(m.getFileName())): m.getObjId()
           for m in mics.iterItems(orderBy="id")}
    want = []
    for m in summary["micrographs"]:
        rows = convert.read_star_block(prot._getExtraPath("picks", "picks", m["stem"] + ".star"), "") \
            if m["n_picks"] else []
        want += [(ids[m["name"]], int(round(r["rlnCoordinateX"])), int(round(r["rlnCoordinateY"])),
                  round(r["rlnAutopickFigureOfMerit"], 4)) for r in rows]
    got = [(c.getMicId(), c.getX(), c.getY(), round(c._rlnAutopickFigureOfMerit.get(), 4))
           for c in coords.iterItems(orderBy="id")]
    assert len(got) > 0 and sorted(got) == sorted(want)
    assert _snapshot(mic_dir) == before
    logs = "".join(open(f, errors="replace").read() for f in prot.getLogPaths()[:2] if os.path.exists(f))
    assert "pick: %d/%d mic (100%%)" % (N_MICS, N_MICS) in logs, logs[-2000:]
    assert "particles picked on %d micrographs" % N_MICS in " ".join(prot.summary())


def test_pick_with_a_folder_that_is_no_picker_fails_naming_it(project, plugin, simulation, tmp_path):
    from genem_scipion.protocols import ProtGenemPick
    if not plugin.engineHasCommand("pick", "apply"):
        pytest.skip("the GenEM engine has no 'pick apply' command")
    not_a_picker = tmp_path / "not_a_picker"
    not_a_picker.mkdir()
    prot = project.newProtocol(ProtGenemPick, objLabel="bad picker", modelDir=str(not_a_picker))
    prot.inputMicrographs.set(simulation)
    prot.inputMicrographs.setExtended("outputMicrographs")
    assert prot.validate() == []  # the folder exists: only the engine can tell
    prot = _launch(project, prot)
    assert prot.isFailed()
    msg = prot.getErrorMessage()
    assert "not_a_picker" in msg and "not a picker model folder" in msg, msg
    assert not hasattr(prot, "outputCoordinates")
    assert os.listdir(str(not_a_picker)) == []
