"""Projection of a 3D potential by the Fourier slice theorem, in RELION's pose convention.

The volume is gridding-corrected (divided by the sinc^2 apodisation of trilinear interpolation), zero-padded
``pad`` times, and transformed once (:class:`FourierProjector`); each projection then samples only the
output-size rfft2 grid of its central slice (as RELION does), with one batched trilinear gather
(``grid_sample``) for many poses, and one inverse rfft2. The 2D projection of a 3D point r is (A r)[:2] with A
RELION's Euler matrix, so the slice for pose A is the 3D spectrum at k3 = A^T (k_x, k_y, 0).
Both real-space boxes are centred at index N//2.

Speed (CPU): only half of the padded spectrum is stored (Friedel symmetry: a point with q_x < 0 is read at -q and
conjugated), with real and imaginary parts interleaved (one cache line per corner), so that it stays in cache;
its z-planes are tiled into a 2D atlas so that torch's vectorised 2D bilinear sampler does the work (two reads and
a blend per point are faster than its generic 3D sampler);
the slice grid of each output size is built once, points outside the Nyquist circle are sent outside the volume
(the sampler skips them), and the batch is split across the intra-op threads (torch's 3D sampler parallelises
over its batch dimension only).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

#: frequency (in volume-box units) given to grid points outside the Nyquist circle: far outside the padded cube
_OUTSIDE = 1.0e4


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
        vol = vol.to(torch.float32)
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
        # half spectrum (Friedel: F(-k) = conj F(k)): z, y centred at p//2, x = frequency 0..p/2
        spec = torch.fft.fftshift(torch.fft.rfftn(torch.fft.ifftshift(vp)), dim=(0, 1))
        del vp
        # the DFT is periodic: frequency +p/2 (index p) is frequency -p/2 (index 0); append it so that points up to
        # the Nyquist sphere interpolate between stored values on every side
        spec = torch.cat([spec, spec[:1]], 0)
        spec = torch.cat([spec, spec[:, :1]], 1)  # (p+1, p+1, p/2+1)
        # the z-planes tiled into a 2D atlas (T x T tiles, each plane with a zero guard row and column) for torch's
        # vectorised 2D bilinear sampler: trilinear = two bilinear reads (planes z0 and z0+1) and a blend
        d, h, w = spec.shape
        t = int(math.ceil(math.sqrt(d)))
        atlas = torch.zeros((t, h + 1, t, w + 1, 2), dtype=torch.float32, device=spec.device)
        planes = torch.view_as_real(spec)  # (d, h, w, 2)
        for z in range(d):
            atlas[z // t, :h, z % t, :w] = planes[z]
        # (1, 2, rows, cols) real/imag channels, stored interleaved (channel stride 1)
        self._atlas = atlas.reshape(t * (h + 1), t * (w + 1), 2).permute(2, 0, 1)[None]
        self._tiles = t
        self._plane_hw = (h, w)
        self._padded = p
        self._grids: dict = {}

    def _base_grid(self, size: int):
        """(size*(size//2+1), 2) slice frequencies (k_x, k_y) in volume-box units, rows in rfft2 order, points
        outside the Nyquist circle moved far away; and the in-circle mask (size, size//2+1)."""
        g = self._grids.get(size)
        if g is None:
            n = size
            ky = torch.fft.fftfreq(n, d=1.0 / n, device=self.device)  # integer cycles per box
            kx = torch.fft.rfftfreq(n, d=1.0 / n, device=self.device)
            KX, KY = torch.meshgrid(kx, ky, indexing="xy")  # (n, n//2+1)
            inside = (KX ** 2 + KY ** 2) <= (n // 2) ** 2
            k2 = torch.stack([KX, KY], -1) * (self.box / n)
            k2 = torch.where(inside[..., None], k2, torch.full_like(k2, _OUTSIDE))
            g = (k2.reshape(-1, 2).contiguous(), inside)
            self._grids[size] = g
        return g

    def _slice_grid(self, rotations: torch.Tensor, size: int):
        """Normalised sampling coordinates (B, size*(size//2+1), 3) in grid_sample's (x, y, z) order into the half
        spectrum, the sign (B, pixels) of the imaginary part (-1 where the point was mirrored), and the mask."""
        k2, inside = self._base_grid(size)
        A = rotations.to(self.device, torch.float32)
        # q = A^T (k_x, k_y, 0): q_j = k_x A_0j + k_y A_1j
        q = torch.matmul(k2, A[:, :2, :])  # (B, pixels, 3)
        # points with q_x < 0 are read at -q and conjugated
        sign = torch.where(q[..., 0] < 0, -1.0, 1.0)
        q.mul_(sign[..., None])
        # padded voxel index: x = pad*q_x (0..p/2); y, z = p/2 + pad*q (0..p)
        p = self._padded
        q.mul_(float(self.pad))
        q[..., 1:].add_(float(p // 2))
        return q, sign, inside

    def _sample(self, idx: torch.Tensor) -> torch.Tensor:
        """Trilinear samples (2, N, M) of the half spectrum at voxel indices idx (N, M, 3) = (x, y, z)."""
        h, w = self._plane_hw
        t = self._tiles
        rows, cols = self._atlas.shape[-2:]
        x, y, z = idx.unbind(-1)
        z0 = torch.floor(z)
        fz = z - z0
        grids = []
        for zz in (z0, z0 + 1):
            tr = torch.div(zz, t, rounding_mode="floor")
            tc = zz - tr * t
            gx = (tc * (w + 1) + x) * (2.0 / (cols - 1)) - 1.0
            gy = (tr * (h + 1) + y) * (2.0 / (rows - 1)) - 1.0
            grids.append(torch.stack([gx, gy], -1))
        n = idx.shape[0]
        g = torch.stack(grids)  # (2, N, M, 2): the two planes as the sampler's batch (parallel over its threads)
        out = F.grid_sample(self._atlas.expand(2 * n, -1, -1, -1), g.reshape(2 * n, 1, -1, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=True)  # (2N, 2, 1, M)
        out = out.reshape(2, n, 2, -1)
        fz = fz[:, None, :]
        return (out[0] * (1 - fz)).add_(out[1] * fz).transpose(0, 1)  # (2, N, M)

    def project_rfft(self, rotations, size: int | None = None) -> torch.Tensor:
        """Central slices (B, size, size//2+1) complex, origin at [0, 0] (transform of ifftshift(image))."""
        size = size or self.box
        R = torch.as_tensor(rotations, dtype=torch.float32)
        if R.ndim == 2:
            R = R[None]
        B = R.shape[0]
        w = size // 2 + 1
        idx, sign, _ = self._slice_grid(R, size)
        # the sampler parallelises over its batch dimension: give it (at least) one chunk of poses per thread
        chunks = max(1, min(torch.get_num_threads(), B))
        out = self._sample(idx.reshape(chunks, -1, 3) if B % chunks == 0 else idx.reshape(1, -1, 3))
        out = out.reshape(2, B, size, w).permute(1, 2, 3, 0)
        out = torch.view_as_complex(out.contiguous())
        # conjugate the mirrored points; a box-N projection sampled on a size grid: rescale to preserve pixel values
        scale = self.pixel_size_A * (size / self.box) ** 2
        out.imag.mul_(sign.reshape(B, size, w))
        return out.mul_(scale)

    def project(self, rotations, size: int | None = None, shifts_px=None) -> torch.Tensor:
        """Projections (B, size, size), centred at size//2, shifted by ``shifts_px`` (B, 2) = (x, y) pixels."""
        size = size or self.box
        spec = self.project_rfft(rotations, size)
        if shifts_px is not None:
            spec = spec * phase_shift_rfft2(shifts_px, size, device=spec.device)
        return torch.fft.fftshift(torch.fft.irfft2(spec, s=(size, size)), dim=(-2, -1))


def phase_shift_rfft2(shifts_px, size: int, *, device=None) -> torch.Tensor:
    """Fourier phase factors (B, size, size//2+1) that translate an image by (x, y) pixels.

    Separable: exp(-2 pi i (k_x s_x + k_y s_y)) = exp(-2 pi i k_y s_y) exp(-2 pi i k_x s_x), phases in float64.
    """
    s = torch.as_tensor(shifts_px, dtype=torch.float64).reshape(-1, 2)
    ky = torch.fft.fftfreq(size, dtype=torch.float64)
    kx = torch.fft.rfftfreq(size, dtype=torch.float64)
    two_pi = 2 * math.pi
    ex = torch.polar(torch.ones(()), torch.remainder(-two_pi * (s[:, :1] * kx[None]), two_pi).to(torch.float32))
    ey = torch.polar(torch.ones(()), torch.remainder(-two_pi * (s[:, 1:] * ky[None]), two_pi).to(torch.float32))
    out = ey[:, :, None] * ex[:, None, :]
    return out.to(device) if device is not None else out
