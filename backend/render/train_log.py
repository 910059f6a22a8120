"""The training log (``train_log.tsv``, one row per epoch) and its loss plot (``losses.png``)."""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_output

LOG_COLUMNS = ("stage", "epoch", "step", "seconds", "l1", "ssim", "lip", "temporal", "adversarial", "total", "val_l1")


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def read_log(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=True))
        rows.append({k: (v if k == "stage" else float(v)) for k, v in row.items()})
    return rows


def plot_losses(log_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("l1", "ssim", "lip", "temporal", "val_l1"):
        axes[0].plot(epochs, [r[name] for r in rows], label=name, marker="." if len(rows) < 30 else None)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_title("reconstruction losses (synthesized region)")
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [r["adversarial"] for r in rows], label="adversarial (generator)")
    axes[1].plot(epochs, [r["total"] for r in rows], label="total")
    axes[1].set_xlabel("epoch")
    axes[1].legend(fontsize=8)
    joint = [r["epoch"] for r in rows if r["stage"] == "joint"]
    if joint:
        for ax in axes:
            ax.axvspan(min(joint) - 1, max(joint), color="0.9", label="joint with smoother")
    fig.tight_layout()
    with atomic_output(out) as partial:
        fig.savefig(partial, dpi=110, format="png")
    plt.close(fig)


def append_row(path: Path, row: dict) -> None:
    """One epoch's figures; the header is written with the first row."""
    if not path.exists():
        path.write_text("\t".join(LOG_COLUMNS) + "\n")
    with path.open("a") as handle:
        handle.write("\t".join(_fmt(row.get(c, "")) for c in LOG_COLUMNS) + "\n")
