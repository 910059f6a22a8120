"""Plot a lip-sync result for a person to check: lip aperture, key channels raw vs smoothed,
the smoothing kernel width, and the phones.

    .venv/bin/python benchmarks/plot_curves.py demo_output/demo_with_transcript.json --out curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steadytalk_shared.curves import LipsyncResult, frame_times
from steadytalk_shared.schema import CHANNEL_INDEX, lip_aperture

CHANNELS_SHOWN = ("jawOpen", "mouthClose", "mouthPucker", "mouthRollLower", "tongueOut")


def plot(result: LipsyncResult, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    t = frame_times(result.num_frames, result.fps)
    fig, axes = plt.subplots(3, 1, figsize=(14, 8), sharex=True, gridspec_kw={"height_ratios": [2, 3, 1]})
    axes[0].plot(t, lip_aperture(result.raw), color="0.6", label="raw")
    axes[0].plot(t, lip_aperture(result.smoothed), color="C3", label="smoothed")
    axes[0].set_ylabel("lip aperture")
    axes[0].legend(loc="upper right")
    for p in result.phones:
        if p.phone != "SIL":
            color = "C2" if p.phone in {"P", "B", "M"} else "0.3"
            axes[0].axvspan(p.start, p.end, color=color, alpha=0.12 if color == "C2" else 0.0)
            axes[0].text(0.5 * (p.start + p.end), axes[0].get_ylim()[1] * 0.92, p.phone, ha="center", fontsize=7,
                         color=color)  # fmt: skip
    for i, name in enumerate(CHANNELS_SHOWN):
        column = CHANNEL_INDEX[name]
        axes[1].plot(t, result.raw[:, column], color=f"C{i}", alpha=0.35, linewidth=1)
        axes[1].plot(t, result.smoothed[:, column], color=f"C{i}", label=name)
    axes[1].set_ylabel("coefficient (thin: raw)")
    axes[1].legend(loc="upper right", ncol=len(CHANNELS_SHOWN), fontsize=8)
    axes[2].plot(t, result.sigma, color="k")
    axes[2].set_ylabel("sigma (frames)")
    axes[2].set_xlabel("seconds")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = LipsyncResult.from_dict(json.loads(args.curves.read_text()))
    plot(result, args.out, f"{args.curves.name}: {result.mode}, {result.fps:g} fps, green = p/b/m")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
