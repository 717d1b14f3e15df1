"""Noise schedules for conditional diffusion (DDPM / DDIM), in the style of ``diffusers`` schedulers.

No network here: a schedule turns a model output into the next sample.

Forward process (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", eq. 4):

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,      abar_t = prod_{s<=t} (1 - beta_s)

Schedules: ``linear`` beta_t from 1e-4 to 0.02 (Ho et al. 2020, sec. 4) and ``cosine``
abar_t = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), s = 0.008, beta clipped at 0.999
(Nichol & Dhariwal 2021, "Improved DDPM", eq. 17).

The network predicts ``epsilon`` or the clean image ``sample`` (x_0); the other follows from the forward equation.
Conditioning on the noise level follows SR3 (Saharia et al. 2021, sec. 2.4): the network sees
``noise_level = sqrt(abar)`` (a continuous value, sampled uniformly between sqrt(abar_{t-1}) and sqrt(abar_t) in
training), not the integer step.

Sampling:
- DDPM ancestral step (Ho et al. 2020, eq. 6-7): x_{t-1} ~ N(mu~_t(x_t, x_0), beta~_t) with
  mu~_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
  beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t.
- DDIM step (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12) between any two steps t > t':
  x_t' = sqrt(abar_t') x_0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z,
  sigma = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t'); eta = 0 is deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "sample")


def make_betas(kind: str, num_train_timesteps: int) -> torch.Tensor:
    """beta_1..beta_T (float64) for the ``linear`` or ``cosine`` schedule."""
    T = int(num_train_timesteps)
    if T < 2:
        raise ValueError("num_train_timesteps must be >= 2")
    if kind == "linear":
        # Ho et al. scale 1e-4..0.02 for T=1000; rescaled so that other T give the same abar curve shape
        scale = 1000.0 / T
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        t = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return torch.clamp(1 - abar[1:] / abar[:-1], max=0.999)
    raise ValueError(f"unknown schedule {kind!r}; choose from {SCHEDULES}")


@dataclass
class StepOutput:
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class DiffusionSchedule:
    """A DDPM/DDIM scheduler: ``add_noise`` for training, ``set_timesteps`` + ``step`` for sampling.

    Timesteps are 0-based: t = 0..T-1 with abar[t] = prod_{s<=t} (1 - beta_s). ``step`` goes from timestep t to
    the previous entry of ``self.timesteps`` (or to the clean image after the last one).
    """

    def __init__(self, kind: str = "cosine", num_train_timesteps: int = 1000, prediction_type: str = "sample"):
        if prediction_type not in PREDICTIONS:
            raise ValueError(f"prediction_type must be one of {PREDICTIONS}")
        self.kind = kind
        self.num_train_timesteps = int(num_train_timesteps)
        self.prediction_type = prediction_type
        self.betas = make_betas(kind, num_train_timesteps)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.timesteps = torch.arange(self.num_train_timesteps - 1, -1, -1)
        self.mode = "ddpm"
        self.eta = 0.0

    # ---------------------------------------------------------------- training
    def noise_level(self, t) -> torch.Tensor:
        """sqrt(abar_t) for integer timesteps (the SR3 conditioning value)."""
        return torch.sqrt(self.alphas_cumprod[torch.as_tensor(t, dtype=torch.long)])

    def sample_noise_levels(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """SR3 training levels: t uniform in 1..T, then sqrt(abar) uniform in [sqrt(abar_t), sqrt(abar_{t-1})]."""
        t = torch.randint(0, self.num_train_timesteps, (batch,), generator=generator)
        hi = torch.sqrt(torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])[t])
        lo = torch.sqrt(self.alphas_cumprod[t])
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        return (lo + (hi - lo) * u).float()

    @staticmethod
    def add_noise_at_level(original: torch.Tensor, noise: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        """x = g x_0 + sqrt(1 - g^2) eps with g = sqrt(abar) per batch item (Ho et al. eq. 4)."""
        g = noise_level.to(original).reshape(-1, *([1] * (original.ndim - 1)))
        return g * original + torch.sqrt(torch.clamp(1 - g * g, min=0)) * noise

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """diffusers-compatible: x_t for integer ``timesteps`` (one per batch item)."""
        t = torch.as_tensor(timesteps, dtype=torch.long).reshape(-1)
        if t.numel() == 1:
            t = t.expand(original.shape[0])
        return self.add_noise_at_level(original, noise, self.noise_level(t))

    # ---------------------------------------------------------------- sampling
    def set_timesteps(self, num_inference_steps: int, mode: str = "ddim", eta: float = 0.0) -> None:
        """Choose ``num_inference_steps`` evenly spaced timesteps (DDIM "trailing" spacing, starting at T-1)."""
        n = int(num_inference_steps)
        if not 1 <= n <= self.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be in 1..{self.num_train_timesteps}")
        if mode not in ("ddim", "ddpm"):
            raise ValueError("mode must be 'ddim' or 'ddpm'")
        T = self.num_train_timesteps
        ts = torch.round(torch.arange(T, 0, -T / n, dtype=torch.float64)).long() - 1
        self.timesteps = torch.unique(ts.clamp(0, T - 1)).flip(0)
        self.mode = mode
        self.eta = float(eta)

    def previous_timestep(self, t: int) -> int:
        ts = self.timesteps.tolist()
        i = ts.index(int(t))
        return ts[i + 1] if i + 1 < len(ts) else -1

    def predict_original(self, model_output: torch.Tensor, t: int, sample: torch.Tensor):
        """(x_0, eps) from the model output at timestep t."""
        ab = self.alphas_cumprod[t].to(sample.dtype)
        if self.prediction_type == "sample":
            x0 = model_output
            eps = (sample - ab.sqrt() * x0) / (1 - ab).sqrt()
        else:
            eps = model_output
            x0 = (sample - (1 - ab).sqrt() * eps) / ab.sqrt()
        return x0, eps

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor,
             generator: torch.Generator | None = None) -> StepOutput:
        t = int(timestep)
        prev = self.previous_timestep(t)
        ab_t = self.alphas_cumprod[t].to(sample.dtype)
        ab_p = self.alphas_cumprod[prev].to(sample.dtype) if prev >= 0 else torch.ones((), dtype=sample.dtype)
        x0, eps = self.predict_original(model_output, t, sample)
        if prev < 0:
            return StepOutput(x0, x0)
        if self.mode == "ddim":
            sigma = self.eta * torch.sqrt((1 - ab_p) / (1 - ab_t)) * torch.sqrt(1 - ab_t / ab_p)
            out = ab_p.sqrt() * x0 + torch.sqrt(torch.clamp(1 - ab_p - sigma ** 2, min=0)) * eps
            if self.eta > 0:
                out = out + sigma * _randn_like(sample, generator)
            return StepOutput(out, x0)
        # DDPM ancestral step between t and prev (the general form for strided steps: alpha = abar_t / abar_prev)
        alpha = ab_t / ab_p
        beta = 1 - alpha
        mean = (ab_p.sqrt() * beta / (1 - ab_t)) * x0 + (alpha.sqrt() * (1 - ab_p) / (1 - ab_t)) * sample
        var = (1 - ab_p) / (1 - ab_t) * beta
        return StepOutput(mean + var.sqrt() * _randn_like(sample, generator), x0)


def _randn_like(x: torch.Tensor, generator):
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
