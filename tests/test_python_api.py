"""docs/python.md runs as written: its ```python block is executed in a temporary folder."""
import os
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def test_python_page_runs(tmp_path, one_torch_thread, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(blocks[0], str(DOC), "exec"), {"__name__": "__docs__"})
    finally:
        os.chdir(cwd)
    assert "denoised particles:" in capsys.readouterr().out
    assert (tmp_path / "denoiser" / "model.pt").exists() and (tmp_path / "translated" / "particles.star").exists()
