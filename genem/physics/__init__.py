"""Pure physics: no file I/O. Potentials, projection, CTF, ice, detector."""
from .constants import interaction_constant_rad_per_V_A, wavelength_A
from .ctf import CTFParams, calculate_ctf_2d, compute_ctf_2d
from .projection import FourierProjector, phase_shift_rfft2
from .rotations import euler_to_matrix_relion, matrix_to_euler_relion, sample_uniform_euler_relion

__all__ = [
    "CTFParams", "FourierProjector", "calculate_ctf_2d", "compute_ctf_2d", "euler_to_matrix_relion",
    "interaction_constant_rad_per_V_A", "matrix_to_euler_relion", "phase_shift_rfft2", "sample_uniform_euler_relion",
    "wavelength_A",
]
