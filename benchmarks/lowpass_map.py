"""Low-pass a density map to a resolution (cosine edge 0.01 1/A wide), as a stand-in for a user's low-resolution
initial model of the specimen. Usage: python benchmarks/lowpass_map.py IN.mrc OUT.mrc RESOLUTION_A [VOXEL_A]
(VOXEL_A: the map's voxel size when its header has none)."""
import sys

import numpy as np

from genem.io import GenemInputError, read_mrc, write_mrc


def lowpass_map(volume: np.ndarray, voxel_A: float, resolution_A: float, edge_per_A: float = 0.01) -> np.ndarray:
    k = [np.fft.fftfreq(n, d=voxel_A) for n in volume.shape]
    kx, ky, kz = np.meshgrid(*k, indexing="ij")
    r = np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)
    lo = 1 / resolution_A - edge_per_A / 2
    filt = 0.5 + 0.5 * np.cos(np.pi * np.clip((r - lo) / edge_per_A, 0, 1))
    return np.real(np.fft.ifftn(np.fft.fftn(volume) * filt)).astype(np.float32)


if __name__ == "__main__":
    src, dst, res = sys.argv[1], sys.argv[2], float(sys.argv[3])
    try:
        vol, vox = read_mrc(src, pixel_size_A=float(sys.argv[4]) if len(sys.argv) > 4 else None)
        if vox is None:
            raise GenemInputError(src, "no voxel size in the header; pass VOXEL_A")
    except GenemInputError as e:
        sys.exit(f"lowpass_map: error: {e}")
    write_mrc(dst, lowpass_map(vol, vox, res), vox)  # atomic
