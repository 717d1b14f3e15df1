"""``genem evaluate picking``: AUPRC and best-threshold precision / recall / F1 of picks against true centres."""
from __future__ import annotations

import json
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("picking", help="picks against true particle centres (Topaz's matching protocol)")
    p.add_argument("--picks", required=True, help="picks folder (as 'genem pick apply' writes) or a folder of "
                                                  "coordinate STARs")
    p.add_argument("--truth", required=True,
                   help="folder of coordinate STARs or label masks, a GenEM dataset folder, or one STAR with "
                        "rlnMicrographName")
    p.add_argument("--out", required=True, help="report JSON (the PR curve and overlay PNGs go beside it)")
    p.add_argument("--radius-px", type=float,
                   help="matching radius in micrograph pixels (default: half the particle diameter, from the "
                        "masks or the picker)")
    p.set_defaults(func=run)


def run(args) -> int:
    from genem.pick import evaluate_picking

    rep = evaluate_picking(args.picks, args.truth, args.out, radius_px=args.radius_px)
    print(json.dumps({k: rep[k] for k in ("auprc", "precision", "recall", "f1", "threshold", "radius_px",
                                          "n_micrographs", "n_truth", "n_picks")}, indent=1))
    print(f"genem evaluate picking: wrote {args.out}", file=sys.stderr)
    return 0
