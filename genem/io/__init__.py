"""File formats and the dataset folder. Public front end; see the private-ish modules for details."""
from .atomic import atomic_path, write_json_atomic, write_text_atomic
from .dataset import DatasetWriter, GenemDataset, micrograph_stem
from .errors import GenemInputError
from .mrc import read_mrc, read_stack_images, write_mrc
from .star import read_particles_star, read_star, write_star

__all__ = [
    "DatasetWriter", "GenemDataset", "GenemInputError", "atomic_path", "micrograph_stem", "read_mrc",
    "read_particles_star", "read_stack_images", "read_star", "write_json_atomic", "write_mrc", "write_star", "write_text_atomic",
]
