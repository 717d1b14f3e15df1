"""A trained noise translator on disk: ``model.pt`` in a model folder holds the generator (its EMA weights when
training kept them), its configuration, the pixel size it works at and the training settings."""
from __future__ import annotations

from pathlib import Path

import torch

from genem.io import GenemInputError, atomic_path

from .networks import Generator, GeneratorConfig, saved_generator_config

MODEL_FILE = "model.pt"
FORMAT = "genem-translate-v1"


def checkpoint_paths(model_dir) -> list[Path]:
    """The training checkpoints in a model folder, oldest first."""
    return sorted((Path(model_dir) / "checkpoints").glob("step_*.pt"))


def save_model(path, generator: Generator, config, pixel_size_A: float, extra=None):
    """Write ``generator`` and its training configuration (a ``TranslateTrainConfig``) atomically to ``path``."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "generator_config": generator.config.to_dict(),
                    "generator": {k: v.cpu() for k, v in generator.state_dict().items()},
                    "pixel_size_A": float(pixel_size_A), "clip_sigma": config.clip_sigma,
                    "train_config": config.to_dict(), **(extra or {})}, tmp)


def load_model(model, device="cpu") -> tuple[Generator, dict]:
    """Load a finished translator from a model folder (or its model.pt); returns ``(generator in eval mode, meta)``."""
    p = Path(model)
    f = p / MODEL_FILE if p.is_dir() else p
    if not f.exists():
        why = "training not finished (checkpoints only; resume it)" if p.is_dir() and checkpoint_paths(p) else \
            "no trained translator (model.pt) here"
        raise GenemInputError(p, why)
    try:
        ck = torch.load(f, map_location=device, weights_only=False)
    except Exception as e:
        raise GenemInputError(f, f"not a readable translator model ({type(e).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise GenemInputError(f, "not a GenEM translator model")
    g = Generator(GeneratorConfig.from_dict(saved_generator_config(ck["generator_config"]), f))
    g.load_state_dict(ck["generator"])
    g.to(device).eval()
    return g, ck
