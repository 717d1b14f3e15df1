"""Conditional sampling: DDPM (ancestral) and DDIM (deterministic with eta=0, few steps) for SR3-style models."""
from __future__ import annotations

import torch

from .schedule import DiffusionSchedule


@torch.no_grad()
def sample_conditional(model, schedule: DiffusionSchedule, cond: torch.Tensor, *, steps: int = 10,
                       mode: str = "ddim", eta: float = 0.0, n_samples: int = 1,
                       generator: torch.Generator | None = None, init_noise: torch.Tensor | None = None,
                       dihedral: bool = False) -> torch.Tensor:
    """Restore ``cond`` (B, 1, H, W) by running the reverse process; returns the mean of ``n_samples`` (B, 1, H, W).

    Each sample starts from its own x_T ~ N(0, I) and runs ``steps`` steps (``schedule.set_timesteps``); the model
    is called as ``model(cat([cond, x_t]), sqrt(abar_t))``. With DDIM and eta=0 the result is a deterministic
    function of (cond, x_T), so a seeded ``generator`` makes it reproducible; ``init_noise`` (n_samples, B, 1, H, W)
    gives the x_T of every sample explicitly (per-image seeds make a result independent of the batch it is in).
    With ``dihedral``, sample k restores the image turned by the k-th element of the square's symmetry group
    (rotations by 90 degrees, mirror) and is turned back: the samples then also differ in how the network sees
    the image, and their mean is closer to the symmetric (posterior-mean-like) estimate.
    """
    if cond.ndim != 4 or cond.shape[1] != 1:
        raise ValueError("cond must be (B, 1, H, W)")
    schedule.set_timesteps(steps, mode=mode, eta=eta)
    total = torch.zeros_like(cond)
    for k in range(int(n_samples)):
        if init_noise is not None:
            x = init_noise[k].to(cond.device, cond.dtype)
        else:
            x = torch.randn(cond.shape, generator=generator, dtype=cond.dtype).to(cond.device)
        turn = k % 8 if dihedral else 0
        c = turn_image(cond, turn)
        x = turn_image(x, turn)
        for t in schedule.timesteps.tolist():
            level = schedule.noise_level(t).to(cond.device).float().expand(cond.shape[0])
            out = model(torch.cat([c, x], 1), level)
            x = schedule.step(out, t, x, generator=generator).prev_sample
        total += turn_image(x, turn, inverse=True)
    return total / int(n_samples)


def turn_image(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """Element ``k`` (0-7) of the dihedral group of the square on the last two axes: mirror (k >= 4), then
    rotate by (k mod 4) x 90 degrees; ``inverse`` undoes it."""
    rot, flip = k % 4, k >= 4
    if not inverse:
        x = x.flip(-1) if flip else x
        return torch.rot90(x, rot, (-2, -1)) if rot else x
    x = torch.rot90(x, -rot, (-2, -1)) if rot else x
    return x.flip(-1) if flip else x
