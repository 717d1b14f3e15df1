"""Output nodes in the format of the RELION that owns the project (3.1 integer node types, 4.0 and 5.0 type
labels), as RELION's own source writes and reads ``RELION_OUTPUT_NODES.star`` and ``default_pipeline.star``."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from genem.io.errors import GenemInputError

VERSION_ENV = "GENEM_RELION_VERSION"
#: Output node kinds: (RELION 3.1 integer type, RELION 4.0 type label, RELION 5.0 type label).
NODE_KINDS = {
    "movies": (0, "MicrographMoviesData.star.relion", "MicrographMovieGroupMetadata.star.relion"),
    "micrographs": (1, "MicrographsData.star.relion", "MicrographGroupMetadata.star.relion"),
    "coordinates": (2, "MicrographsCoords.star.relion", "MicrographCoordsGroup.star.relion"),
    # picks, as RELION's own AutoPick labels its autopick.star (LABEL_AUTOPICK_COORDS in pipeline_jobs.h, 4.0 / 5.0)
    "picks": (2, "MicrographsCoords.star.relion.autopick", "MicrographCoordsGroup.star.relion.autopick"),
    "particles": (3, "ParticlesData.star.relion", "ParticleGroupMetadata.star.relion"),
    "map": (6, "DensityMap.mrc", "DensityMap.mrc"),
    "mask": (7, "Mask3D.mrc", "Mask3D.mrc"),
}
RELION_VERSIONS = ("3.1", "4.0", "5.0")


def detect_relion_version(project_dir=".") -> str:
    """The RELION that owns the project: ``3.1``, ``4.0`` or ``5.0``, read from ``default_pipeline.star``.

    Integer node/process types = 3.1; type labels = 4.0, or 5.0 when the file says ``# version 50001``.
    ``GENEM_RELION_VERSION`` overrides; a folder that is not a RELION project counts as 3.1."""
    env = os.environ.get(VERSION_ENV, "").strip()
    if env:
        if env not in RELION_VERSIONS:
            raise GenemInputError(VERSION_ENV, f"expected one of {', '.join(RELION_VERSIONS)}, got {env!r}")
        return env
    p = Path(project_dir) / "default_pipeline.star"
    if not p.is_file():
        return "3.1"
    text = p.read_text(errors="replace")
    if re.search(r"^#\s*version\s+5\d{4}", text, flags=re.M):
        return "5.0"
    if re.search(r"_rlnPipeLine(Node|Process)(TypeLabel|StatusLabel)\b", text):
        return "4.0"
    return "3.1"


def node_type(kind: str, relion_version: str):
    """The node type RELION ``relion_version`` expects for ``kind`` (an int for 3.1, a label for 4.0 / 5.0)."""
    if kind not in NODE_KINDS:
        raise ValueError(f"unknown node kind {kind!r}; expected one of {sorted(NODE_KINDS)}")
    if relion_version not in RELION_VERSIONS:
        raise ValueError(f"unknown RELION version {relion_version!r}")
    return NODE_KINDS[kind][RELION_VERSIONS.index(relion_version)]


def format_output_nodes(nodes: Sequence[tuple[str, str]], relion_version: str) -> str:
    """Text of ``RELION_OUTPUT_NODES.star`` for ``[(node path relative to the project, kind), ...]``."""
    stamp = "50001" if relion_version == "5.0" else "30001"
    column = "_rlnPipeLineNodeType" if relion_version == "3.1" else "_rlnPipeLineNodeTypeLabel"
    lines = ["", f"# version {stamp}", "", "data_output_nodes", "", "loop_",
             "_rlnPipeLineNodeName #1", f"{column} #2"]
    for name, kind in nodes:
        if any(c.isspace() for c in str(name)):
            raise ValueError(f"RELION node names cannot contain spaces: {name!r}")
        lines.append(f"{name} {node_type(kind, relion_version)}")
    return "\n".join(lines) + "\n\n"


def read_output_nodes(path) -> list[tuple[str, str]]:
    """Read a ``RELION_OUTPUT_NODES.star`` back as ``[(name, type as text)]`` (any of the three formats)."""
    rows, in_loop, cols = [], False, []
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if s.startswith("loop_"):
            in_loop = True
            continue
        if in_loop and s.startswith("_"):
            cols.append(s.split()[0])
            continue
        if in_loop and s and not s.startswith("#"):
            parts = s.split()
            rows.append((parts[0], parts[1]))
    return rows
