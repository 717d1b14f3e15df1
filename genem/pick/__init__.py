"""Particle picking: a small fully convolutional picker trained on GenEM datasets and/or real labels, applied to
micrographs as they come, and scored with Topaz's matching protocol. See docs/pick.md."""
from .apply import DogPicker, pick_image, pick_micrographs
from .data import centres_from_mask, read_centres, read_coordinates_star
from .evaluate import evaluate_picking
from .metrics import match_picks, precision_recall, score_micrographs
from .model import Picker, PickerMeta, PickerNet
from .train import PickTrainConfig, train_picker

__all__ = [
    "DogPicker", "PickTrainConfig", "Picker", "PickerMeta", "PickerNet", "centres_from_mask", "evaluate_picking",
    "match_picks", "pick_image", "pick_micrographs", "precision_recall", "read_centres", "read_coordinates_star",
    "score_micrographs", "train_picker",
]
