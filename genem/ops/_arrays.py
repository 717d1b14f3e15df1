"""Operations take torch tensors; numpy arrays are accepted and given back as numpy (same dtype)."""
from __future__ import annotations

import numpy as np
import torch


def as_tensor(x) -> tuple[torch.Tensor, bool]:
    """``(tensor, was_numpy)``; a numpy array is wrapped without copying when it can be."""
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x)
        return torch.from_numpy(x if x.flags.writeable else x.copy()), True
    return torch.as_tensor(x), False


def like_input(t: torch.Tensor, was_numpy: bool):
    return t.numpy() if was_numpy else t
