"""The real micrographs' train / validation / evaluation split, and the best-validated model with early stopping."""
import torch

from genem.translate.validate import BestValidated, split_real


def test_split_whole_micrographs_when_several_strips_when_one():
    one = split_real([1000], 0.25, 0.15)
    assert one.eval_start == (750,) and one.train_columns == ((0, 600),) and one.val_columns == ((600, 750),)
    four = split_real([800, 800, 800, 1000], 0.25, 0.15)
    assert four.train_columns == ((0, 600), (0, 600), (0, 600), None)       # the last one validates, whole
    assert four.val_columns == (None, None, None, (0, 750)) and four.eval_start[-1] == 750
    assert split_real([800, 800], 0.25, 0.0).val_columns == (None, None)   # no validation


def test_best_validated_keeps_the_best_and_stops_after_patience(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    g = torch.nn.Linear(2, 1)
    best = BestValidated(tmp_path, patience=2)
    weights = {}
    for step, score in ((250, 0.5), (500, 0.3), (750, 0.4), (1000, 0.35)):
        with torch.no_grad():
            g.weight.fill_(step)
        weights[step] = g.weight.clone()
        best.record(step, {"val_raps_log10": score, "val_feature_c2st": 0.5, "val_score": score}, 1.0, g)
        assert best.should_stop == (step == 1000)
    assert best.best_step == 500 and torch.equal(best.best_generator(g).weight, weights[500])
    # resuming from step 750 forgets the later validation and keeps the best
    again = BestValidated(tmp_path, patience=2, resume_step=750)
    assert again.best_step == 500 and again.since_best == 1 and not again.should_stop
    assert (tmp_path / "val_log.tsv").read_text().count("\n") == 4  # header + 3 rows
