"""Physics simulation of annotated micrographs: ``SimulationConfig`` + ``run_simulation``."""
from .config import SimulationConfig, StructureSpec
from .pipeline import merge_shards, micrograph_seed, resolve_config, run_simulation, simulate_micrograph, write_dataset_tables

__all__ = ["SimulationConfig", "StructureSpec", "merge_shards", "micrograph_seed", "resolve_config", "run_simulation",
           "simulate_micrograph", "write_dataset_tables"]
