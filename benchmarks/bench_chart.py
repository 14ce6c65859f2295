"""The PNG of a bench run (matplotlib, Agg): fix rate and epochs to fix per block and method,
and fix rate per case in the first block."""

from __future__ import annotations

from typing import Any

__all__ = ["chart"]


def chart(data: dict, summary: dict[str, Any], path: str) -> None:
    """Three panels; every value comes from ``summary`` (itself from the run's rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    blocks, methods = list(summary["by_block"]), data["methods"]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(blocks))
    for i, m in enumerate(methods):
        rates = [summary["by_block"][b][m]["fix_rate"] or 0 for b in blocks]
        epochs = [summary["by_block"][b][m]["median_epochs_to_fix_censored"] or 0 for b in blocks]
        axes[0].bar(x + i * width, rates, width, label=m)
        axes[1].bar(x + i * width, epochs, width, label=m)
    for ax, title in ((axes[0], "fix rate (config-fixable cases)"),
                      (axes[1], "median epochs to first healthy report (unfixed = budget)")):
        ax.set_xticks(x + width * (len(methods) - 1) / 2, blocks, rotation=15)
        ax.set_title(title)
        ax.legend(fontsize=8)
    first = blocks[0] if blocks else None
    if first:
        cases = [c for c, per in summary["by_case"][first].items() if any(per[m]["fixable_runs"] for m in methods)]
        grid = np.array([[summary["by_case"][first][c][m]["fix_rate"] or 0 for m in methods] for c in cases])
        axes[2].imshow(grid if len(cases) else np.zeros((1, len(methods))), cmap="RdYlGn", vmin=0, vmax=1,
                       aspect="auto")
        axes[2].set_yticks(range(len(cases)), cases, fontsize=7)
        axes[2].set_xticks(range(len(methods)), methods, rotation=15)
        axes[2].set_title(f"fix rate per case ({first})")
    fig.suptitle(f"sick zoo, {data['date_utc']}, {data['cores']} cores: {data['command']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
