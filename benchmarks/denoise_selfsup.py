"""Does self-supervised fine-tuning on the user's own particles keep real detail? (issue 17, fidelity)

    python benchmarks/denoise_selfsup.py --out DIR [--noise relion|particles] [--steps 400] [--alpha 0.5] [--lr 1e-4]

The RELION tutorial beta-galactosidase particles (``../shared/data``) have no clean truth, so the shipped model
(its default route: one DDIM step + post-processor) is fine-tuned end to end with Recorrupted-to-Recorrupted
(Pang et al., CVPR 2021), which needs only the noisy particles and their noise statistics: for a particle y with
Gaussian noise of covariance C and any z ~ N(0, C),

    y1 = y + alpha z,   y2 = y - z / alpha,   E ||f(y1) - y2||^2 = E ||f(y1) - x||^2 + const,

so regressing y2 from y1 trains f towards the clean image x without ever seeing it (the noise of y1 and y2 is
uncorrelated) -- provided z has the noise's covariance. The noise is taken as stationary: C is diagonal in Fourier
space, per ring either RELION's noise estimate of the Class2D run (``rlnSigma2Noise`` in its ``_model.star``,
scaled to the particles' power in the outer third of the rings; ``--noise relion``, the default) or the
particles' own mean power spectrum (``--noise particles``: it holds the signal too, 1.4-2.6x the noise in the
lowest rings here, which biases R2R against the low resolutions). The model is applied to y itself afterwards
(noise C, not (1 + alpha^2) C as in training).

Training uses the particles that are NOT among the 400 evaluation particles of ``benchmarks/denoise_real.py``
(the same random draw), and never their Class2D references; the evaluation is that script's: FRC per band and
masked CC with each particle's aligned, CTF-modulated Class2D average, for raw, the best low-pass, the shipped
default route and the fine-tuned one. DIR/model (a model folder ``genem denoise apply --model`` takes),
DIR/report.json, DIR/report.md (printed), DIR/loss.tsv.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.denoise_real import (  # noqa: E402
    DATA, best_lowpass_real, evaluation_indices, load_betagal, read_betagal_images, score_real)
from genem.io import read_particles_star  # noqa: E402
from genem.restore.apply import denoise_batch  # noqa: E402
from genem.restore.model import Denoiser  # noqa: E402
from genem.restore.sampler import turn_image  # noqa: E402


def noise_amplitude_2d(images: torch.Tensor) -> torch.Tensor:
    """sqrt of the mean power spectrum per rfft2 coefficient, scaled so that ``colour_noise`` has that spectrum."""
    h, w = images.shape[-2:]
    power = (torch.fft.rfft2(images).abs() ** 2).mean(0)
    return torch.sqrt(power / (h * w))


def relion_sigma2_noise(model_star: Path) -> np.ndarray:
    """RELION's per-ring noise power of the first optics group (``rlnSigma2Noise`` of a Class2D/Refine3D
    ``_model.star``), ring 0 .. box/2."""
    from genem.io import read_star

    blocks = read_star(model_star)
    return blocks["model_optics_group_1"]["rlnSigma2Noise"].to_numpy(float)


def noise_amplitude_from_sigma2(sigma2: np.ndarray, images: torch.Tensor) -> torch.Tensor:
    """Like :func:`noise_amplitude_2d`, with RELION's per-ring noise shape ``sigma2`` instead of the particles' own
    power (which also holds the signal, up to 2.6x the noise in the lowest rings here); scaled to the particles'
    mean power in the outer third of the rings, where the signal is negligible (FRC with the class averages < 0.05)."""
    from genem.ops import radial_power_spectrum_2d

    h, w = images.shape[-2:]
    measured = radial_power_spectrum_2d(images).mean(0).numpy()
    outer = slice(len(measured) // 3, len(measured))
    scale = float(np.median(measured[outer] / sigma2[: len(measured)][outer]))
    ky = torch.fft.fftfreq(h, dtype=torch.float64)[:, None] * min(h, w)
    kx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :] * min(h, w)
    ring = torch.sqrt(ky ** 2 + kx ** 2).numpy()
    power = np.interp(ring, np.arange(len(sigma2)), sigma2 * scale)  # per pixel variance of the noise at that ring
    return torch.from_numpy(np.sqrt(power)).float()


def colour_noise(amplitude: torch.Tensor, shape, generator: torch.Generator) -> torch.Tensor:
    """Stationary Gaussian noise (B, H, W) whose power spectrum is ``amplitude`` squared (times H W)."""
    white = torch.randn(shape, generator=generator)
    return torch.fft.irfft2(torch.fft.rfft2(white) * amplitude, s=shape[-2:])


def route(model: Denoiser, noisy: torch.Tensor, x_T: torch.Tensor) -> torch.Tensor:
    """The default route, differentiable: one DDIM step from ``x_T`` (the network's clean-image prediction at the
    first timestep) and the post-processor; (B, 1, H, W) in the model's target units."""
    model.schedule.set_timesteps(1)
    t = int(model.schedule.timesteps[0])
    level = model.schedule.noise_level(t).float().expand(len(noisy))
    x0 = model.schedule.step(model.diffusion(torch.cat([noisy, x_T], 1), level), t, x_T).prev_sample
    return model.postprocess(noisy, x0)


def fine_tune(model: Denoiser, particles: torch.Tensor, *, steps: int, batch: int, lr: float, alpha: float,
              seed: int, log_path: Path, amp: torch.Tensor) -> list:
    g = torch.Generator().manual_seed(seed)
    nets = [model.diffusion, model.postprocess]
    params = [p for net in nets for p in net.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    for net in nets:
        net.train()
    losses, t0 = [], time.time()
    with open(log_path, "w") as log:
        log.write("step\tloss\tseconds\n")
        for step in range(1, steps + 1):
            idx = torch.randint(0, len(particles), (batch,), generator=g)
            turn = int(torch.randint(0, 8, (1,), generator=g))
            y = turn_image(particles[idx], turn)[:, None]
            z = colour_noise(amp, (batch,) + tuple(particles.shape[-2:]), g)[:, None]
            y1, y2 = y + alpha * z, y - z / alpha
            x_T = torch.randn(y.shape, generator=g)
            out = route(model, y1, x_T) / model.target_scale
            loss = torch.mean((out - y2) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            log.write(f"{step}\t{losses[-1]:.5f}\t{time.time() - t0:.1f}\n")
            if step % 50 == 0:
                print(f"step {step}/{steps}: loss (last 50) {np.mean(losses[-50:]):.4f}, {time.time() - t0:.0f} s",
                      file=sys.stderr, flush=True)
    for net in nets:
        net.eval()
    return losses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--n-eval", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--noise", choices=("relion", "particles"), default="relion",
                    help="noise spectrum: RELION's sigma2 of the Class2D run (scaled to the particles' high rings), "
                         "or the particles' own mean power (signal included)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)

    _, rows = read_particles_star(DATA / "Class2D" / "job010" / "run_it025_data.star")
    held = set(evaluation_indices(len(rows), a.n_eval).tolist())
    train_rows = rows.iloc[[k for k in range(len(rows)) if k not in held]]
    particles = read_betagal_images(train_rows)
    print(f"{len(particles)} training particles (the {len(held)} evaluation particles left out)", file=sys.stderr)

    model = Denoiser.load(None)
    t0 = time.time()
    amp = (noise_amplitude_2d(particles) if a.noise == "particles" else noise_amplitude_from_sigma2(
        relion_sigma2_noise(DATA / "Class2D" / "job010" / "run_it025_model.star"), particles))
    losses = fine_tune(model, particles, steps=a.steps, batch=a.batch, lr=a.lr, alpha=a.alpha, seed=a.seed,
                       log_path=a.out / "loss.tsv", amp=amp)
    train_s = time.time() - t0
    model.meta = {**model.meta, "fine_tuned": {"method": "Recorrupted-to-Recorrupted on the user's particles",
                                               "particles": len(particles), "steps": a.steps, "alpha": a.alpha,
                                               "noise": a.noise, "lr": a.lr, "batch": a.batch, "seed": a.seed}}
    model.save(a.out / "model")

    raw, ref, mask, px, _ = load_betagal(a.n_eval)
    sigma, lp = best_lowpass_real(raw, ref, mask)

    def apply(m):
        return torch.cat([denoise_batch(m, raw[i:i + 64], px, seeds=range(i, min(i + 64, len(raw))))
                          for i in range(0, len(raw), 64)])

    methods = {"raw": raw, f"low-pass (sigma {sigma} px)": lp, "shipped default route": apply(Denoiser.load(None)),
               "fine-tuned (R2R) default route": apply(Denoiser.load(a.out / "model"))}
    scores = {k: score_real(v, ref, mask, px) for k, v in methods.items()}
    report = {"args": {k: str(v) for k, v in vars(a).items()}, "train_particles": len(particles),
              "train_seconds": round(train_s, 1), "loss_first_last_50": [float(np.mean(losses[:50])),
                                                                          float(np.mean(losses[-50:]))],
              "scores": scores}
    (a.out / "report.json").write_text(json.dumps(report, indent=1))
    bands = list(next(iter(scores.values()))["frc_bands"])
    lines = ["| band | " + " | ".join(scores) + " |", "|---|" + "---|" * len(scores)]
    lines += [f"| {b} | " + " | ".join(f"{s['frc_bands'][b]:.3f}" for s in scores.values()) + " |" for b in bands]
    lines.append("| masked CC | " + " | ".join(f"{s['cc_mean']:.3f}" for s in scores.values()) + " |")
    lines.append(f"\n{a.steps} steps, {len(particles)} particles, {train_s / 60:.1f} min of training")
    (a.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
