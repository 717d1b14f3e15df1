"""CLI flags default to None (the engine's defaults apply) and --help shows those defaults with their units."""
import pytest

from genem.cli.main import build_parser, main


@pytest.mark.parametrize("argv, shown", [
    (["simulate"], ["(default: 300 kV)", "(default: 8000,25000 A)", "(default: 40 e/A^2)"]),
    (["translate", "train"], ["(default: 6000)", "(default: 64 px)"]),
    (["translate", "apply"], ["(default: 2048 px)"]),
    (["denoise", "train"], ["(default: 3000)", "(default: 1,2,2)", "(default: 3600)"]),
    (["denoise", "apply"], ["(default: 64)", "(default: 512 px)"]),
    (["evaluate", "denoise"], ["(default: 256)"]),
    (["evaluate", "realism"], ["(default: 64 px)", "(default: 20)"]),
])
def test_help_shows_engine_defaults(argv, shown, capsys):
    with pytest.raises(SystemExit):
        main(argv + ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for s in shown:
        assert s in text


def test_flags_left_out_are_none():
    args = build_parser().parse_args(["simulate", "--out", "x"])
    assert args.voltage_kV is None and args.defocus_A is None and args.seed is None
    args = build_parser().parse_args(["denoise", "train", "--out", "x"])
    assert args.steps is None and args.channel_mults is None and args.seed is None
    args = build_parser().parse_args(["translate", "train", "--simulated", "s", "--real", "r", "--out", "x"])
    assert args.tile_px is None and args.lr is None
