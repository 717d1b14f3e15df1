"""GenEM for cryoSPARC: external jobs through cryosparc-tools (online), .cs/.csg export and import (offline).
The STAR <-> .cs conversion is the engine's (:mod:`genem.io.cs_convert`). The adapter holds no numerics."""
from .convert import cs_dataset_to_star, merge_into, star_to_cs_dataset

__all__ = ["cs_dataset_to_star", "merge_into", "star_to_cs_dataset"]
