"""Atomic writes give outputs the modes of ordinary new files (the umask applies), not mkstemp's 0600."""
import os
import stat

import numpy as np
import pandas as pd
import pytest

from genem.io import write_json_atomic, write_mrc, write_star, write_text_atomic
from genem.io.atomic import atomic_path, ordinary_file_mode


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_outputs_get_the_umask_mode(tmp_path, umask):
    expected = 0o666 & ~umask
    assert ordinary_file_mode() == expected
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "a.json", {"a": 1})
    write_mrc(tmp_path / "a.mrc", np.zeros((4, 4), np.float32), 1.5)
    write_star(tmp_path / "a.star", {"particles": pd.DataFrame({"rlnCoordinateX": [1.0]})})
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"1")
    for name in ("a.txt", "a.json", "a.mrc", "a.star", "b.bin"):
        assert _mode(tmp_path / name) == expected, name
    # an ordinary open() in the same process agrees
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    assert _mode(tmp_path / "plain.txt") == expected


def test_failed_block_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "c.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
