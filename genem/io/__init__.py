"""File formats, particle sets and the dataset folder. Public front end; see the modules for details.

The cryoSPARC names (``read_cs`` ... ``cs_ctf_table``) load cryosparc-tools on first use."""
from .atomic import atomic_path, write_json_atomic, write_text_atomic
from .dataset import DatasetWriter, GenemDataset, micrograph_stem
from .errors import GenemInputError
from .images import read_image
from .mrc import header_pixel_size_A, read_mrc, read_stack_images, write_mrc
from .outputs import check_out_dir, check_out_file, claim_out_dir
from .particles import (
    MicrographTable, ParticleSet, image_files, read_micrograph_table, read_particle_ctf_table, read_particle_set,
    resolve_root, write_particle_table,
)
from .star import read_particles_star, read_star, star_pixel_sizes_A, write_star

_CS = {
    "cs": ("blob_paths", "merge_into", "read_cs", "stable_uid", "write_cs"),
    "cs_convert": ("UID_COLUMN", "cs_ctf_table", "cs_dataset_to_star", "micrograph_shapes_px",
                   "micrographs_star_to_cs_dataset", "star_to_cs_dataset", "write_particles_cs"),
}
_LAZY = {name: module for module, names in _CS.items() for name in names}

__all__ = [
    "DatasetWriter", "GenemDataset", "GenemInputError", "MicrographTable", "ParticleSet", "atomic_path",
    "check_out_dir", "check_out_file", "claim_out_dir", "header_pixel_size_A",
    "image_files", "micrograph_stem", "read_micrograph_table", "read_mrc", "read_particle_ctf_table",
    "read_image", "read_particle_set", "read_particles_star", "read_stack_images", "read_star", "resolve_root",
    "star_pixel_sizes_A", "write_json_atomic", "write_mrc", "write_particle_table", "write_star",
    "write_text_atomic", *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
