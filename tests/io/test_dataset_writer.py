"""DatasetWriter writes the documented layout (checked here with the literal names, from outside)."""
import numpy as np
import pandas as pd
import pytest

from genem.io import GenemDataset, GenemInputError
from genem.io.dataset import DatasetWriter, micrograph_name, particle_image_name


def test_writer_layout_and_completion_mark(tmp_path):
    out = DatasetWriter(tmp_path / "ds").prepare()
    img = np.zeros((32, 32), np.float32)
    out.write_micrograph("mic_000001", img, 2.0)
    out.write_micrograph("mic_000001", img.astype(np.uint16), 2.0, "mask", dtype=np.uint16)
    out.write_particle_stack("mic_000001", np.zeros((2, 16, 16), np.float32), 2.0, clean=True)
    out.write_coordinates("mic_000001", pd.DataFrame({"rlnCoordinateX": [1.0], "rlnCoordinateY": [2.0]}))
    assert out.write_ground_truth(0, np.zeros((8, 8, 8), np.float32), 2.0) == "ground_truth/structure_00.mrc"
    out.write_record("mic_000001", {"done": 1})
    assert out.has_record("mic_000001") and out.read_record("mic_000001") == {"done": 1}
    root = out.root
    for rel in ("Micrographs/mic_000001.mrc", "Masks/mic_000001.mrc", "ParticlesClean/mic_000001.mrcs",
                "Coordinates/mic_000001_coords.star", ".parts/mic_000001.json"):
        assert (root / rel).is_file(), rel
    assert micrograph_name("mic_000001", "ice") == "Ice/mic_000001.mrc"
    assert particle_image_name(0, "mic_000001") == "000001@Particles/mic_000001.mrcs"
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnMicrographPixelSize": [2.0]})
    mics = pd.DataFrame({"rlnMicrographName": [micrograph_name("mic_000001")]})
    out.write_tables({"optics": optics, "micrographs": mics})
    assert (root / "micrographs.star").is_file() and not (root / "particles.star").exists()
    with pytest.raises(GenemInputError):
        GenemDataset.open(root)  # no manifest yet: unfinished
    assert not out.is_complete
    out.write_manifest({"kind": "test"})
    assert out.is_complete and GenemDataset.open(root).manifest == {"kind": "test"}

    copy = DatasetWriter(tmp_path / "copy")
    copy.copy_from(root)
    for rel in ("Masks/mic_000001.mrc", "ParticlesClean/mic_000001.mrcs", "Coordinates/mic_000001_coords.star",
                "ground_truth/structure_00.mrc", "micrographs.star"):
        assert (copy.root / rel).read_bytes() == (root / rel).read_bytes(), rel
    assert not (copy.root / "Micrographs").exists() and not copy.is_complete
