"""``steadytalk face-motion-train``: fit the whole-face models (blinks, gaze, brows, head) on
tracked real video and write their parameters (the shipped file by default)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import SteadyTalkError


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("face-motion-train", help="fit blinks, gaze, brows and head motion on tracked video")
    train.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="the shared data folder (its video/ is tracked)"
    )
    train.add_argument("--out", type=Path, help="parameters JSON (default: the shipped face_motion.json)")
    train.add_argument("--cache", type=Path, default=Path("build/face_tracks"), help="tracking cache folder")
    train.add_argument("--default-style", default="lively", help="style used when none is asked for")
    train.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from ..atomic import atomic_output
    from ..evaluation.face_tracks import corpus
    from ..performance.model import DEFAULT_PATH
    from ..performance.train import fit_performer

    if not (args.data / "video").is_dir():
        raise SteadyTalkError(f"No video folder in {args.data}.", "Pass --data pointing at the shared data folder.")
    train, held = corpus(args.data, args.cache)
    if not train:
        raise SteadyTalkError(f"No training video found in {args.data / 'video'}.", "See ATTRIBUTION.md for the files.")
    styles = {c.style for c in train}
    if args.default_style not in styles:
        raise SteadyTalkError(
            f"No clips of style {args.default_style!r}.", f"Choose one of: {', '.join(sorted(styles))}."
        )
    print(f"{len(train)} training clips, {len(held)} held out (not used)")
    performer = fit_performer(train, args.default_style)
    out = args.out or DEFAULT_PATH
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(performer.to_dict(), indent=1) + "\n")
    print(f"wrote {out}")
    return 0
