"""The diffusion particle denoiser (``genem denoise``): ``TrainConfig`` + ``train_denoiser``, ``Denoiser.load``
(``None``: the shipped default model), ``denoise_particles`` / ``denoise_micrographs`` and ``evaluate_denoiser``."""
from .apply import denoise_micrographs, denoise_particles
from .evaluate import evaluate_denoiser
from .model import Denoiser
from .specimen import simulate_specimen_pairs
from .train import TrainConfig, architecture_of, train_denoiser

__all__ = ["Denoiser", "TrainConfig", "architecture_of", "denoise_micrographs", "denoise_particles",
           "evaluate_denoiser", "simulate_specimen_pairs", "train_denoiser"]
