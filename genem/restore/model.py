"""A trained denoiser: diffusion U-Net + schedule + post-processing U-Net + the particle geometry it was trained
at, saved as one ``model.pt`` (plus ``model.json`` metadata) in a model folder."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genem.io import GenemInputError
from genem.ops import normalize_background_2d, pad_to_multiple_2d

from .postprocess import PostProcessor
from .sampler import sample_conditional
from .schedule import DiffusionSchedule
from .unet import UNet, UNetConfig

FORMAT = "genem-denoiser-1"
MAX_UPSAMPLING = 1.5  # refuse images whose pixels are coarser than the model's by more than this factor
MODEL_FILE = "model.pt"
PASS_PIXELS = 2 ** 16  # pixels per network call (16 box-64 or 4 box-128 particles): larger calls are slower on CPU
FULL_SAMPLER_STEPS = 10  # the DDIM steps of the full sampler route (the post-processor was trained on its outputs)
DEFAULT_MODEL_DIR = Path(__file__).with_name("default_model")


@dataclass
class Denoiser:
    """Everything needed to denoise: call :meth:`denoise_normalized` or :meth:`denoise_images`."""

    diffusion: UNet
    schedule: DiffusionSchedule
    postprocess: PostProcessor | None
    pixel_size_A: float
    box_px: int
    target_scale: float
    default_steps: int = 10
    default_postprocess: bool = True  # the default route: ``default_steps`` DDIM steps, then the post-processor?
    meta: dict = field(default_factory=dict)
    source: str | None = None  # the model file it was loaded from (not saved)

    @property
    def stride(self) -> int:
        s = self.diffusion.config.stride
        if self.postprocess is not None:
            s = max(s, self.postprocess.config.stride)
        return s

    def check_pixel_size(self, pixel_size_A: float, source) -> None:
        """Refuse images whose pixels are coarser than the model's by more than :data:`MAX_UPSAMPLING`."""
        if pixel_size_A > MAX_UPSAMPLING * self.pixel_size_A:
            raise GenemInputError(source, f"pixel size {pixel_size_A:.3f} A is coarser than the model's "
                                          f"{self.pixel_size_A:.3f} A by more than {MAX_UPSAMPLING}x; "
                                          "use a model trained at this pixel size")

    def box_for(self, box_px: int, pixel_size_A: float) -> int:
        """Box (even) at the model's pixel size covering the field of view of ``box_px`` pixels of ``pixel_size_A``;
        the images are resampled when it differs from ``box_px``."""
        b = int(round(box_px * pixel_size_A / self.pixel_size_A / 2)) * 2
        return max(b, 2 * self.stride)

    def to(self, device):
        """Move the networks to ``device`` in channels-last layout (the faster convolution layout on CPU)."""
        for net in (self.diffusion, self.postprocess):
            if net is not None:
                net.to(device, memory_format=torch.channels_last)
        return self

    def uses_postprocess(self, steps: int | None, postprocess: bool | None) -> bool:
        """Whether a run applies the post-processor: ``postprocess`` if given; else the default route's choice
        when ``steps`` is the default, and True for any other step count (the post-processor was trained on
        sampler outputs). ``steps`` 0 runs no diffusion pass: the post-processor alone, on (noisy, zeros)."""
        if self.postprocess is None:
            return False
        if postprocess is not None:
            return bool(postprocess)
        return self.default_postprocess if steps in (None, self.default_steps) else True

    @torch.inference_mode()
    def denoise_normalized(self, noisy: torch.Tensor, *, steps: int | None = None, n_samples: int = 1,
                           postprocess: bool | None = None, mode: str = "ddim", eta: float = 0.0,
                           seed: int = 0, seeds=None, dihedral: bool = False) -> torch.Tensor:
        """Denoise RELION-normalised images (B, H, W) at the model's pixel size; returns (B, H, W), same units.
        ``steps`` / ``postprocess`` default to the model's default route (:meth:`uses_postprocess`).

        ``seeds`` (one per image) draws each image's starting noise from its own generator, so an image's result
        does not depend on the batch it is in; otherwise one generator seeded with ``seed`` serves the batch."""
        self.diffusion.eval()
        dev = next(self.diffusion.parameters()).device
        x, (h, w) = pad_to_multiple_2d(noisy.to(dev, torch.float32)[:, None], self.stride)
        x = x.contiguous(memory_format=torch.channels_last)
        post = self.uses_postprocess(steps, postprocess)
        steps = self.default_steps if steps is None else int(steps)
        if steps == 0:  # no diffusion pass: the post-processor alone restores, from (noisy, zeros)
            if not post:
                raise GenemInputError("arguments", "0 diffusion steps (the post-processor alone) needs the "
                                                   "post-processing U-Net")
            out = torch.zeros_like(x)
        chunk = len(x)
        if steps > 0:
            g = torch.Generator().manual_seed(int(seed))
            init = None
            if seeds is not None:
                init = torch.stack([torch.randn((n_samples, 1) + x.shape[-2:], generator=torch.Generator(
                    ).manual_seed(int(s) % (2 ** 63))) for s in seeds], 1)
            if mode == "ddim" and eta == 0:  # deterministic given x_T: draw every x_T first, then run in chunks
                if init is None:  # the draws the sampler would make from ``g``, in its order
                    init = torch.stack([torch.randn(x.shape, generator=g) for _ in range(n_samples)])
                chunk = max(1, PASS_PIXELS // (x.shape[-2] * x.shape[-1]))
            out = torch.cat([sample_conditional(self.diffusion, self.schedule, x[i:i + chunk], steps=steps,
                                                mode=mode, eta=eta, n_samples=n_samples, generator=g,
                                                init_noise=None if init is None else init[:, i:i + chunk],
                                                dihedral=dihedral) for i in range(0, len(x), chunk)])
        if post:
            self.postprocess.eval()
            out = torch.cat([self.postprocess(x[i:i + chunk], out[i:i + chunk]) for i in range(0, len(x), chunk)])
        return (out / self.target_scale)[:, 0, :h, :w]

    def weights_digest(self) -> str:
        """A short digest of the weights (names a model in run records without a path)."""
        import hashlib

        h = hashlib.sha256()
        nets = [self.diffusion] + ([self.postprocess] if self.postprocess is not None else [])
        for net in nets:
            for k, v in net.state_dict().items():
                h.update(k.encode())
                h.update(v.detach().cpu().float().numpy().tobytes())
        return h.hexdigest()[:16]

    def denoise_images(self, images: torch.Tensor, **kw) -> torch.Tensor:
        """Normalise (background mean/sd), denoise, and put back on the input's scale."""
        norm, mean, sd = normalize_background_2d(torch.as_tensor(images, dtype=torch.float32))
        return self.denoise_normalized(norm, **kw).cpu() * sd + mean

    # ------------------------------------------------------------------ save / load
    def state(self) -> dict:
        def half(sd):
            return {k: v.detach().cpu().half() if v.is_floating_point() else v.cpu() for k, v in sd.items()}

        return {
            "format": FORMAT,
            "diffusion": {"config": self.diffusion.config.to_dict(), "state_dict": half(self.diffusion.state_dict())},
            "postprocess": None if self.postprocess is None else {
                "config": self.postprocess.config.to_dict(), "state_dict": half(self.postprocess.state_dict())},
            "schedule": {"kind": self.schedule.kind, "num_train_timesteps": self.schedule.num_train_timesteps,
                         "prediction_type": self.schedule.prediction_type},
            "pixel_size_A": self.pixel_size_A, "box_px": self.box_px, "target_scale": self.target_scale,
            "default_steps": self.default_steps, "default_postprocess": self.default_postprocess, "meta": self.meta,
        }

    def save(self, folder) -> Path:
        from genem.io import atomic_path, write_json_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        st = self.state()
        with atomic_path(folder / MODEL_FILE) as tmp:
            torch.save(st, tmp)
        info = {k: v for k, v in st.items() if k not in ("diffusion", "postprocess")}
        info["diffusion_config"] = st["diffusion"]["config"]
        info["postprocess_config"] = st["postprocess"]["config"] if st["postprocess"] else None
        write_json_atomic(folder / "model.json", info)
        return folder / MODEL_FILE

    @classmethod
    def from_state(cls, st: dict) -> "Denoiser":
        def f32(sd):
            return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}

        diff = UNet(UNetConfig.from_dict(st["diffusion"]["config"]))
        diff.load_state_dict(f32(st["diffusion"]["state_dict"]))
        post = None
        if st.get("postprocess"):
            post = PostProcessor(UNetConfig.from_dict(st["postprocess"]["config"]))
            post.load_state_dict(f32(st["postprocess"]["state_dict"]))
        sch = DiffusionSchedule(**st["schedule"])
        return cls(diff.eval(), sch, None if post is None else post.eval(), float(st["pixel_size_A"]),
                   int(st["box_px"]), float(st["target_scale"]), int(st.get("default_steps", 10)),
                   bool(st.get("default_postprocess", True)), st.get("meta", {}))

    @classmethod
    def load(cls, folder=None, device="cpu") -> "Denoiser":
        """Load a model folder (or a model.pt path); ``None`` loads the default model shipped in the package."""
        folder = Path(folder) if folder is not None else DEFAULT_MODEL_DIR
        path = folder / MODEL_FILE if folder.is_dir() else folder
        if not path.exists():
            raise GenemInputError(folder, f"no denoiser model here ({MODEL_FILE} missing)")
        try:
            st = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise GenemInputError(path, f"not a readable model file ({type(e).__name__})") from None
        if not isinstance(st, dict) or st.get("format") != FORMAT:
            raise GenemInputError(path, f"not a GenEM denoiser model (expected format {FORMAT})")
        den = cls.from_state(st).to(device)
        den.source = str(path)
        return den


def read_model_info(folder) -> dict:
    return json.loads((Path(folder) / "model.json").read_text())
