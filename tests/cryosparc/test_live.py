"""Against a real cryoSPARC: runs only when a server and credentials are configured, skips with the reason otherwise.

Needs CRYOSPARC_BASE_URL, credentials (CRYOSPARC_EMAIL + CRYOSPARC_PASSWORD, or a saved
`python -m cryosparc.tools login`), and GENEM_CRYOSPARC_TEST_PROJECT / GENEM_CRYOSPARC_TEST_WORKSPACE naming a
project and workspace the test may create jobs in. The server must be visible from this machine.
"""
import os

import pytest


def _live_reason():
    if not os.environ.get("CRYOSPARC_BASE_URL"):
        return "CRYOSPARC_BASE_URL not set (no cryoSPARC server to test against)"
    if not (os.environ.get("CRYOSPARC_EMAIL") and os.environ.get("CRYOSPARC_PASSWORD")):
        from cryosparc.auth import InstanceAuthSessions

        if InstanceAuthSessions.load().find(os.environ["CRYOSPARC_BASE_URL"], os.environ.get("CRYOSPARC_EMAIL")) is None:
            return "no cryoSPARC credentials (CRYOSPARC_EMAIL/CRYOSPARC_PASSWORD or `python -m cryosparc.tools login`)"
    if not (os.environ.get("GENEM_CRYOSPARC_TEST_PROJECT") and os.environ.get("GENEM_CRYOSPARC_TEST_WORKSPACE")):
        return "GENEM_CRYOSPARC_TEST_PROJECT / GENEM_CRYOSPARC_TEST_WORKSPACE not set (where test jobs may go)"
    return None


REASON = _live_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def test_live_simulate_then_denoise_input_round_trip(tmp_path):
    from genem_cryosparc import external

    cs = external.connect_cryosparc()
    project, workspace = os.environ["GENEM_CRYOSPARC_TEST_PROJECT"], os.environ["GENEM_CRYOSPARC_TEST_WORKSPACE"]
    uid = external.simulate_job(cs, project, workspace,
                                ["--n-micrographs", "1", "--micrograph-size", "256", "--box", "32", "--particles", "8",
                                 "--pixel-size-A", "4", "--noise-mode", "none", "--seed", "1"],
                                work_dir=tmp_path / "w", title="GenEM live test (simulate)")
    job = cs.find_job(project, uid)
    assert job.status == "completed"
    particles = job.load_output("particles")
    assert len(particles) == 8
    assert {"blob", "ctf", "alignments3D", "location"} <= set(particles.prefixes())
    assert all(str(p).startswith(f"{uid}/genem/") for p in particles["blob/path"])
    mics = job.load_output("micrographs")
    assert len(mics) == 1 and set(particles["location/micrograph_uid"]) == set(mics["uid"])
