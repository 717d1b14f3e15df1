"""The picking metrics with hand-made picks: Topaz's greedy matching, exact AUPRC, the matching radius, and true
centres from label masks whose disks touch."""
import numpy as np
import pytest

from genem.pick import centres_from_mask, match_picks, precision_recall, score_micrographs
from genem.pick.data import disk_diameter_px


def test_greedy_matching_takes_picks_in_descending_score():
    truth = [(10.0, 10.0)]
    picks = [(12.0, 10.0), (10.0, 10.0)]  # the nearer pick has the lower score: the higher one takes the particle
    tp = match_picks(picks, [0.9, 0.5], truth, radius_px=5)
    assert tp.tolist() == [True, False]


def test_each_pick_takes_the_nearest_unmatched_centre():
    truth = [(0.0, 0.0), (6.0, 0.0)]
    tp = match_picks([(4.0, 0.0), (1.0, 0.0)], [0.9, 0.8], truth, radius_px=5)
    assert tp.tolist() == [True, True]  # 1st -> (6,0) (nearest), 2nd -> (0,0) (the one left)


def test_matching_radius_is_inclusive_and_strict_beyond():
    assert match_picks([(3.0, 4.0)], [1.0], [(0.0, 0.0)], radius_px=5.0).tolist() == [True]
    assert match_picks([(3.0, 4.01)], [1.0], [(0.0, 0.0)], radius_px=5.0).tolist() == [False]


def test_exact_auprc_on_a_known_ranking():
    # ranking by score: TP, FP, TP, FP; 3 true particles (one never found)
    # AP = (1/3)(1/1) + (1/3)(2/3) = 5/9; best F1: after rank 3, P = 2/3, R = 2/3 -> F1 = 2/3
    res = precision_recall([0.9, 0.8, 0.7, 0.6], [True, False, True, False], n_truth=3)
    assert res["auprc"] == pytest.approx(5 / 9)
    assert res["best"]["f1"] == pytest.approx(2 / 3)
    assert res["best"]["threshold"] == pytest.approx(0.7)
    assert res["best"]["precision"] == pytest.approx(2 / 3) and res["best"]["recall"] == pytest.approx(2 / 3)


def test_tied_scores_enter_together():
    # a TP and an FP with the same score cannot be ordered: precision is taken after both
    res = precision_recall([0.5, 0.5], [True, False], n_truth=1)
    assert res["auprc"] == pytest.approx(0.5)
    assert res["curve"]["threshold"] == [0.5]


def test_pooled_over_micrographs_with_matching():
    items = [
        (np.array([[10.0, 10.0], [50.0, 50.0]]), np.array([0.9, 0.4]), np.array([[11.0, 10.0]])),
        (np.array([[20.0, 20.0]]), np.array([0.6]), np.array([[20.0, 21.0], [80.0, 80.0]])),
    ]
    res = score_micrographs(items, radius_px=3)
    # pooled ranking: 0.9 TP, 0.6 TP, 0.4 FP; 3 true -> AP = (1 + 1)/3
    assert res["auprc"] == pytest.approx(2 / 3)
    assert res["n_truth"] == 3 and res["n_picks"] == 3


def _disks(shape, centres, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    m = np.zeros(shape, bool)
    for x, y in centres:
        m |= (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    return m


def test_touching_and_overlapping_disks_are_split():
    centres = [(30, 40), (50, 40), (68, 47), (120, 100), (150, 30)]  # first three touch / overlap in a chain
    m = _disks((140, 180), centres, 11)
    assert disk_diameter_px(m) == pytest.approx(22, abs=1.0)
    found = centres_from_mask(m, 22)
    assert len(found) == len(centres)
    for c in centres:
        assert np.min(np.hypot(*(found - np.array(c, float)).T)) <= 1.0


def test_mask_diameter_estimated_when_not_given():
    m = _disks((100, 100), [(20, 20), (38, 22), (70, 70)], 10)
    assert len(centres_from_mask(m)) == 3
