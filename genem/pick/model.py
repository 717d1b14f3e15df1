"""The picker: a small fully convolutional U-Net that turns a micrograph at one pixel size into a particle-centre
heatmap (probability that a particle centre lies within a quarter diameter of each pixel), and its model folder.

Model folder::

    picker.json    kind, pixel size, particle diameter, architecture, threshold (and where it was chosen), training
    model.pt       network weights (state dict)
    checkpoint.pt  weights + optimiser + step + random state, for --resume (training only)
    loss.tsv       step and mean loss since the previous line
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from genem.io import GenemInputError, write_json_atomic
from genem.io.atomic import atomic_path

KIND = "genem-picker"
META_FILE = "picker.json"
WEIGHTS_FILE = "model.pt"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU(inplace=True))


class PickerNet(nn.Module):
    """U-Net-lite: ``depth`` poolings, ``width`` channels at full resolution (doubling per level), one logit per
    pixel. Input (B, 1, H, W) with H, W multiples of 2**depth."""

    def __init__(self, width: int = 16, depth: int = 2):
        super().__init__()
        chans = [width * 2 ** k for k in range(depth + 1)]
        self.down = nn.ModuleList([_block(1, chans[0])] + [_block(chans[k - 1], chans[k]) for k in range(1, depth + 1)])
        self.up = nn.ModuleList([_block(chans[k] + chans[k + 1], chans[k]) for k in range(depth)])
        self.head = nn.Conv2d(chans[0], 1, 1)
        nn.init.constant_(self.head.bias, -3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for k in reversed(range(len(self.up))):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.up[k](torch.cat([skips[k], x], 1))
        return self.head(x)


@dataclass(frozen=True)
class PickerMeta:
    """What a picker was made for. ``threshold`` is the default cut on the heatmap score, chosen by best F1 on
    the training micrographs (``threshold_source`` says on which)."""

    pixel_size_A: float
    particle_diameter_A: float
    width: int = 16
    depth: int = 2
    threshold: float = 0.5
    threshold_source: str = "not chosen"
    training: dict | None = None

    @property
    def diameter_px(self) -> float:
        return self.particle_diameter_A / self.pixel_size_A


class Picker:
    """A network with its metadata. :meth:`heatmap` maps a binned, normalised micrograph to scores in [0, 1]."""

    method = "model"

    def __init__(self, meta: PickerMeta, net: PickerNet | None = None, device: str = "cpu"):
        self.meta = meta
        self.device = torch.device(device)
        self.net = (net or PickerNet(meta.width, meta.depth)).to(self.device)

    @property
    def pixel_size_A(self) -> float:
        return self.meta.pixel_size_A

    @property
    def particle_diameter_A(self) -> float:
        return self.meta.particle_diameter_A

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    def heatmap(self, image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None].to(self.device)
        m = 2 ** self.meta.depth
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="reflect" if min(h, w) > m else "replicate")
        was = self.net.training
        self.net.eval()
        with torch.inference_mode():
            out = torch.sigmoid(self.net(x))[0, 0, :h, :w].float().cpu().numpy()
        self.net.train(was)
        return out

    def with_meta(self, **changes) -> "Picker":
        return Picker(replace(self.meta, **changes), self.net, str(self.device))

    def save(self, folder) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            torch.save({k: v.detach().cpu() for k, v in self.net.state_dict().items()}, tmp)
        write_json_atomic(folder / META_FILE, {"kind": KIND, **asdict(self.meta)})
        return folder

    @classmethod
    def load(cls, folder, device: str = "cpu") -> "Picker":
        folder = Path(folder)
        meta = read_meta(folder)
        if not (folder / WEIGHTS_FILE).is_file():
            raise GenemInputError(folder, f"no {WEIGHTS_FILE} (training not finished?)")
        picker = cls(meta, device=device)
        try:
            state = torch.load(folder / WEIGHTS_FILE, map_location=picker.device, weights_only=True)
            picker.net.load_state_dict(state)
        except Exception as e:
            raise GenemInputError(folder / WEIGHTS_FILE, f"not readable picker weights ({type(e).__name__})") from None
        return picker


def read_meta(folder) -> PickerMeta:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise GenemInputError(folder, f"not a picker model folder (no {META_FILE})")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise GenemInputError(path, "not valid JSON") from None
    if d.pop("kind", None) != KIND:
        raise GenemInputError(path, f"not a GenEM picker (kind is not {KIND})")
    try:
        return PickerMeta(**d)
    except TypeError as e:
        raise GenemInputError(path, f"unexpected content ({e})") from None
