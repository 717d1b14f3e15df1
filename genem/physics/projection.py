"""Projection of a 3D potential by the Fourier slice theorem, in RELION's pose convention.

The volume is gridding-corrected (divided by the sinc^2 apodisation of trilinear interpolation), zero-padded
``pad`` times, and transformed once (:class:`FourierProjector`); each projection then samples only the
output-size rfft2 grid of its central slice (as RELION does), with one batched trilinear gather
(``grid_sample``) for many poses, and one inverse rfft2. The 2D projection of a 3D point r is (A r)[:2] with A
RELION's Euler matrix, so the slice for pose A is the 3D spectrum at k3 = A^T (k_x, k_y, 0).
Both real-space boxes are centred at index N//2.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _sinc2_correction(n: int, padded: int, device, dtype):
    x = (torch.arange(n, device=device, dtype=dtype) - n // 2) / padded
    s = torch.sinc(x) ** 2
    return s


class FourierProjector:
    """Holds the padded spectrum of one volume (z, y, x), box N, and projects it for batches of poses.

    The volume values are integrated along the beam in units of (value * A): a potential in V gives V*A.
    """

    def __init__(self, volume, pixel_size_A: float, *, pad: int = 2, device=None):
        vol = torch.as_tensor(np.asarray(volume, dtype=np.float32) if not torch.is_tensor(volume) else volume)
        if device is not None:
            vol = vol.to(device)
        if vol.ndim != 3 or len(set(vol.shape)) != 1:
            raise ValueError(f"volume must be cubic, got shape {tuple(vol.shape)}")
        n = vol.shape[0]
        self.box = n
        self.pad = pad
        self.pixel_size_A = float(pixel_size_A)
        self.device = vol.device
        p = pad * n
        s = _sinc2_correction(n, p, vol.device, vol.dtype)
        total = vol.sum()
        vol = vol / (s[:, None, None] * s[None, :, None] * s[None, None, :])
        vol = vol * (total / vol.sum()) if float(vol.sum()) != 0 else vol  # keep the DC (total potential) exact
        vp = torch.zeros((p, p, p), dtype=vol.dtype, device=vol.device)
        o = p // 2 - n // 2
        vp[o:o + n, o:o + n, o:o + n] = vol
        spec = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(vp)))
        # (1, 2, D, H, W) real/imag channels for grid_sample; D=z, H=y, W=x
        self._spec = torch.stack([spec.real, spec.imag])[None].contiguous()
        self._padded = p

    def _slice_grid(self, rotations: torch.Tensor, size: int):
        """Normalised sampling coordinates (1, B, size, size//2+1, 3) and the in-sphere mask."""
        n = size
        dev = self.device
        ky = torch.fft.fftfreq(n, d=1.0 / n, device=dev)  # integer cycles per box
        kx = torch.fft.rfftfreq(n, d=1.0 / n, device=dev)
        KX, KY = torch.meshgrid(kx, ky, indexing="xy")  # (n, n//2+1)
        k2 = torch.stack([KX, KY, torch.zeros_like(KX)], -1) * (self.box / n)  # in units of the volume box
        # q = A^T k  ->  q_j = sum_i A_ij k_i
        q = torch.einsum("bij,hwi->bhwj", rotations.to(dev, torch.float32), k2)
        scale = self.pad
        c = self._padded // 2
        idx = c + scale * q  # padded voxel index, order (x, y, z)
        g = idx / (self._padded - 1) * 2 - 1
        inside = (KX ** 2 + KY ** 2) <= (n // 2) ** 2
        return g[None], inside

    def project_rfft(self, rotations, size: int | None = None) -> torch.Tensor:
        """Central slices (B, size, size//2+1) complex, origin at [0, 0] (transform of ifftshift(image))."""
        size = size or self.box
        R = torch.as_tensor(rotations, dtype=torch.float32)
        if R.ndim == 2:
            R = R[None]
        g, inside = self._slice_grid(R, size)
        out = F.grid_sample(self._spec, g, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
        spec = torch.complex(out[0], out[1]) * inside
        # a box-N projection sampled on a size grid: rescale so that pixel values are preserved
        return spec * (self.pixel_size_A * (size / self.box) ** 2)

    def project(self, rotations, size: int | None = None, shifts_px=None) -> torch.Tensor:
        """Projections (B, size, size), centred at size//2, shifted by ``shifts_px`` (B, 2) = (x, y) pixels."""
        size = size or self.box
        spec = self.project_rfft(rotations, size)
        if shifts_px is not None:
            spec = spec * phase_shift_rfft2(shifts_px, size, device=spec.device)
        return torch.fft.fftshift(torch.fft.irfft2(spec, s=(size, size)), dim=(-2, -1))


def phase_shift_rfft2(shifts_px, size: int, *, device=None) -> torch.Tensor:
    """Fourier phase factors (B, size, size//2+1) that translate an image by (x, y) pixels."""
    s = torch.as_tensor(shifts_px, dtype=torch.float32, device=device).reshape(-1, 2)
    ky = torch.fft.fftfreq(size, device=device)
    kx = torch.fft.rfftfreq(size, device=device)
    KX, KY = torch.meshgrid(kx, ky, indexing="xy")
    ph = -2 * np.pi * (KX[None] * s[:, 0, None, None] + KY[None] * s[:, 1, None, None])
    return torch.polar(torch.ones_like(ph), ph)
