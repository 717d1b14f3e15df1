"""Noise translation (simulated -> real micrographs): ``TranslateTrainConfig`` + ``train_translator``,
``load_model`` and ``apply_translator``."""
from .apply import apply_translator
from .model import load_model
from .networks import DiscriminatorConfig, GeneratorConfig
from .train import TranslateTrainConfig, read_loss_log, train_translator

__all__ = ["DiscriminatorConfig", "GeneratorConfig", "TranslateTrainConfig", "apply_translator", "load_model",
           "read_loss_log", "train_translator"]
