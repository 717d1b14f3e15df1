"""Physical constants and the relativistic electron wavelength / interaction constant."""
from __future__ import annotations

import math

import torch

#: h^2 / (2 pi m0 e) in V*A^2: converts Peng electron scattering factors (A) into potential (V).
H2_OVER_2PI_M0_E_V_A2 = 47.87801
ELECTRON_REST_ENERGY_keV = 510.99895


def wavelength_A(voltage_kV):
    """Relativistic electron wavelength in A (RELION's formula): 0.019687 A at 300 kV; a number or a tensor."""
    v = voltage_kV * 1e3
    x = v * (1.0 + 0.978466e-6 * v)
    return 12.2643247 / (torch.sqrt(x) if isinstance(x, torch.Tensor) else math.sqrt(x))


def interaction_constant_rad_per_V_A(voltage_kV: float) -> float:
    """sigma_e = 2 pi m e lambda / h^2 in rad/(V*A) (Kirkland eq. 5.6); ~6.5e-4 at 300 kV."""
    lam = wavelength_A(voltage_kV)
    e0 = ELECTRON_REST_ENERGY_keV
    v = voltage_kV
    # 2*pi / (lambda * V) * (m0 c^2 + eV) / (2 m0 c^2 + eV)
    return 2.0 * math.pi / (lam * v * 1e3) * (e0 + v) / (2.0 * e0 + v)
