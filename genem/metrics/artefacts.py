"""Artefacts that translated (or simulated) micrographs carry and real ones lack, found in their spectra.

``detect_artefacts(real_images, candidate_images)`` compares whole micrographs (each normalised to zero mean and
unit variance) and returns one finding per kind of artefact, each with the number measured on the candidate, the
same number on the real micrographs, the threshold and whether it is flagged:

- ``directional_streaks``: the angular distribution of the 2D power spectrum, per frequency band. Tiles are
  Hann-windowed, their power spectra averaged; each band's power in 5-degree sectors is divided by the band's
  median sector (log10: ``a(theta)``). Streaks put power in a few directions: the finding is
  ``max over bands and angles of a_candidate(theta) - a_real(theta)`` (decades), so anisotropy the real
  micrographs share (detector rows, astigmatism) does not count.
- ``periodic_pattern``: isolated peaks of the mean 2D power spectrum over its local median (a 9x9 median filter
  of log10 power). A peak counts when it exceeds what averaging ``n`` tiles of exponential noise reaches by
  chance (Bonferroni over all frequencies, ``PEAK_FALSE_ALARM``) *and* the real spectrum has no peak there.
- ``tiling_seams``: column (and row) profiles of the intensity step across each line (squared mean first
  difference over 64 px runs) and of its texture (mean squared first difference), as robust z-scores; a seam is a
  line unlike the others, found where the candidate's largest z exceeds max(8, 1.5 x the real micrographs').
- ``intensity_drift``: a quadratic surface fitted to each micrograph binned to ~32 px blocks; its standard
  deviation in units of the pixel standard deviation (a slow background trend), candidate's largest vs real's.

``radial_log10_ratio`` (per band, candidate over real, not a finding) says where the radial spectra differ.
Pure numpy/scipy on arrays; no I/O.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy import stats

from genem.ops import fit_background_trend_2d, normalize_image_2d

BANDS_CYCLES_PER_PX = ((0.02, 0.06), (0.06, 0.12), (0.12, 0.25), (0.25, 0.45))
ANGLE_BIN_DEG = 5.0
PEAK_FALSE_ALARM = 1e-3   # chance of one false peak per spectrum
PEAK_MIN_DECADES = 0.5    # and never less than 3.2x the local median
STREAK_DECADES = 0.1      # sector power 1.26x the band median where the real micrographs have at most the median
STREAK_Z = 5.0           # and 5 standard errors (spread over tiles) above it
SEAM_MIN_Z = 8.0
SEAM_SEGMENT_PX = 64
DRIFT_MIN_SD = 0.05


@dataclass(frozen=True)
class ArtefactFinding:
    name: str
    flagged: bool
    value: float            # measured on the candidate micrographs
    reference: float        # the same measure on the real ones (or the chance level)
    threshold: float        # flagged when value exceeds it
    detail: str


def _normalise(img) -> np.ndarray:
    return normalize_image_2d(np.asarray(img, np.float64))[0]


def _tiles(images, tile_px: int):
    """Non-overlapping ``tile_px`` tiles of each (normalised) image, one image's tiles at a time."""
    for img in images:
        x = _normalise(img)
        h, w = x.shape
        tiles = [x[r:r + tile_px, c:c + tile_px] for r in range(0, h - tile_px + 1, tile_px)
                 for c in range(0, w - tile_px + 1, tile_px)]
        if tiles:
            yield np.stack(tiles)


def _sectors(tile_px: int):
    r, theta = _polar(tile_px)
    n_sec = int(180 / ANGLE_BIN_DEG)
    sector = np.minimum((theta / ANGLE_BIN_DEG).astype(int), n_sec - 1)
    index = np.full(r.shape, -1)
    for b, (lo, hi) in enumerate(BANDS_CYCLES_PER_PX):
        band = (r >= lo) & (r < hi)
        index[band] = b * n_sec + sector[band]
    return index.ravel(), len(BANDS_CYCLES_PER_PX) * n_sec, n_sec


def tile_power_spectra(images, tile_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean centred 2D power spectrum (tile_px, tile_px) of Hann-windowed, normalised tiles, and each tile's mean
    power per band and 5-degree sector (n_tiles, n_bands, n_sectors)."""
    index, n_cells, n_sec = _sectors(tile_px)
    keep = index >= 0
    counts = np.bincount(index[keep], minlength=n_cells)
    w = np.hanning(tile_px)
    total, sectors = np.zeros((tile_px, tile_px)), []
    for t in _tiles(images, tile_px):
        t = normalize_image_2d(t)[0]
        p = np.fft.fftshift(np.abs(np.fft.fft2(t * np.outer(w, w))) ** 2 / tile_px ** 2, axes=(-2, -1))
        total += p.sum(axis=0)
        flat = p.reshape(len(p), -1)[:, keep]
        sectors += [np.bincount(index[keep], f, minlength=n_cells) / np.maximum(counts, 1) for f in flat]
    if not sectors:
        raise ValueError(f"no {tile_px} px tile fits in the images")
    return total / len(sectors), np.array(sectors).reshape(len(sectors), -1, n_sec)


def _polar(tile_px: int):
    k = np.arange(tile_px) - tile_px // 2
    ky, kx = np.meshgrid(k, k, indexing="ij")
    r = np.hypot(ky, kx) / tile_px
    theta = np.degrees(np.arctan2(ky, kx)) % 180.0
    return r, theta


def angular_profiles(sectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From per-tile sector powers (n, bands, sectors): log10 of each sector's mean power over its band's median
    sector, and the standard error of that log10 (from the spread over tiles). A band with an empty sector (small
    tiles: too few frequencies at low radius) is not measured: 0 with an infinite standard error."""
    m = sectors.mean(axis=0)
    se = sectors.std(axis=0, ddof=1) / np.sqrt(len(sectors)) if len(sectors) > 1 else np.full_like(m, np.inf)
    empty = (m <= 0).any(axis=1)
    m[empty] = 1.0
    se = np.where(empty[:, None], np.inf, se / (m * np.log(10)))
    return np.log10(m / np.median(m, axis=1, keepdims=True)), se


def spectral_peaks(spectrum: np.ndarray) -> np.ndarray:
    """log10 of the spectrum over its 9x9 local median (0 at the DC neighbourhood, radius < 3 px)."""
    logp = np.log10(np.maximum(spectrum, 1e-30))
    excess = logp - ndi.median_filter(logp, size=9, mode="wrap")
    r, _ = _polar(spectrum.shape[-1])
    excess[r * spectrum.shape[-1] < 3] = 0.0
    return excess


def radial_band_log10_ratio(spec_candidate: np.ndarray, spec_real: np.ndarray) -> dict[str, float]:
    r, _ = _polar(spec_real.shape[-1])
    out = {}
    for lo, hi in BANDS_CYCLES_PER_PX:
        band = (r >= lo) & (r < hi)
        out[f"{lo:g}-{hi:g}"] = float(np.log10(spec_candidate[band].mean() / spec_real[band].mean()))
    return out


def _z_profile(p: np.ndarray) -> np.ndarray:
    med = np.median(p)
    mad = np.median(np.abs(p - med)) * 1.4826
    return (p - med) / max(mad, 1e-12)


def seam_score(img, segment_px: int = SEAM_SEGMENT_PX) -> float:
    """Largest robust z-score of one column (or row) against the others, over both axes: an intensity step
    (the mean first difference across the line, squared, averaged over ``segment_px`` runs along it, so steps of
    either sign add up) or a change of texture (mean squared first difference). Outermost lines left out."""
    x = _normalise(img)
    best = 0.0
    for a in (x, x.T):
        d = np.diff(a, axis=1)
        n_seg = max(1, d.shape[0] // segment_px)
        steps = (d[: n_seg * segment_px].reshape(n_seg, -1, d.shape[1]).mean(axis=1) ** 2).mean(axis=0)[1:-1]
        texture = (d ** 2).mean(axis=0)[1:-1]
        if len(steps) < 16:
            continue
        best = max(best, float(_z_profile(steps).max()), float(_z_profile(texture).max()))
    return best


def drift_sd(img) -> float:
    """Standard deviation of the quadratic background (:func:`genem.ops.fit_background_trend_2d`) of the normalised
    micrograph: a slow trend, in units of the pixel standard deviation."""
    return float(fit_background_trend_2d(_normalise(img)).std())


def detect_artefacts(real_images, candidate_images, *, tile_px: int = 256) -> dict:
    """Compare ``candidate_images`` (translated / simulated micrographs, a list of (H, W)) with ``real_images``.

    Returns ``{"artefacts": [names flagged], "findings": [ArtefactFinding as dicts], "radial_log10_ratio": {band:
    log10 candidate/real}, "tile_px": ..., "n_tiles_real": ..., "n_tiles_candidate": ...}``. ``tile_px`` is cut
    to the largest power of two that fits the smallest image.
    """
    real_images, candidate_images = list(real_images), list(candidate_images)
    if not real_images or not candidate_images:
        raise ValueError("detect_artefacts needs real and candidate images")
    smallest = min(min(np.shape(i)) for i in real_images + candidate_images)
    t = int(min(tile_px, 2 ** int(np.floor(np.log2(smallest)))))
    spec_r, sec_r = tile_power_spectra(real_images, t)
    spec_c, sec_c = tile_power_spectra(candidate_images, t)
    n_r, n_c = len(sec_r), len(sec_c)
    findings = []

    (a_c, se_c), (a_r, se_r) = angular_profiles(sec_c), angular_profiles(sec_r)
    diff = a_c - np.maximum(a_r, 0.0)   # a direction the real micrographs lack power in does not count
    limit = np.maximum(STREAK_DECADES, STREAK_Z * np.hypot(se_c, se_r))
    band, sector = np.unravel_index(np.argmax(diff / limit), diff.shape)
    lo, hi = BANDS_CYCLES_PER_PX[band]
    findings.append(ArtefactFinding(
        "directional_streaks", bool((diff > limit).any()), float(diff[band, sector]),
        float(a_r[band, sector]), float(limit[band, sector]),
        f"sector {sector * ANGLE_BIN_DEG:g}-{(sector + 1) * ANGLE_BIN_DEG:g} deg of the {lo:g}-{hi:g} cycles/px "
        f"band: log10 power over the band's median sector (candidate; reference: real), threshold "
        f"max({STREAK_DECADES}, {STREAK_Z:g} standard errors)"))

    half = t * t // 2
    chance = [np.log10(stats.gamma.isf(PEAK_FALSE_ALARM / half, n, scale=1.0 / n)) + 0.2 for n in (n_c, n_r)]
    thr = max(PEAK_MIN_DECADES, chance[0])
    peaks_c, peaks_r = spectral_peaks(spec_c), ndi.maximum_filter(spectral_peaks(spec_r), size=3)
    new = (peaks_c > thr) & (peaks_r < max(PEAK_MIN_DECADES, chance[1]))
    r, _ = _polar(t)
    value = float(peaks_c[new].max()) if new.any() else float(peaks_c.max())
    where = ""
    if new.any():
        i = np.argmax(np.where(new, peaks_c, -np.inf))
        where = f"; strongest at {r.ravel()[i]:.3f} cycles/px (period {1 / max(r.ravel()[i], 1e-9):.1f} px)"
    findings.append(ArtefactFinding(
        "periodic_pattern", bool(new.any()), value, float(peaks_r.max()), float(thr),
        f"{int(new.sum()) // 2} isolated spectral peak(s) absent from the real spectrum{where}"))

    for name, measure, floor, factor, what in (
            ("tiling_seams", seam_score, SEAM_MIN_Z, 1.5,
             "largest robust z of one row or column (intensity step or texture across it) against the others"),
            ("intensity_drift", drift_sd, DRIFT_MIN_SD, 2.0,
             "sd of a quadratic background surface (pixel sd units), largest over micrographs")):
        v_r = max(measure(i) for i in real_images)
        v_c = max(measure(i) for i in candidate_images)
        thr_v = max(floor, factor * v_r)
        findings.append(ArtefactFinding(name, bool(v_c > thr_v), v_c, v_r, thr_v, what))

    return {"artefacts": [f.name for f in findings if f.flagged], "findings": [asdict(f) for f in findings],
            "radial_log10_ratio": radial_band_log10_ratio(spec_c, spec_r), "tile_px": t,
            "n_tiles_real": int(n_r), "n_tiles_candidate": int(n_c)}
