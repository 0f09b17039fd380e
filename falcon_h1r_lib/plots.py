"""One figure style for the repository, and saving under paper-derived names.

Figures are written only by code, only from measured or quoted files (STYLE rule 17); the file
name says which paper figure or table it mirrors, e.g. ``fig8_throughput`` or ``table7_deepconf``.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt
import seaborn as sns

from .config import figures_dir

OURS = "#1f77b4"  # measured by this repository
PAPER = "#7f7f7f"  # quoted from the paper
HYBRID = "#d62728"  # Falcon-H1 hybrid
TRANSFORMER = "#2ca02c"  # Transformer comparison model
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def set_theme() -> None:
    """Seaborn's whitegrid with sizes that read well in JupyterLab and in the README."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight"})


def save_figure(fig: plt.Figure, name: str, profile: str = "tiny") -> Path:
    """Save ``fig`` as ``figures/<name>.png`` (tiny) or ``figures/full/<name>.png`` and return the path."""
    if not _NAME.match(name):
        raise ValueError(f"figure name {name!r}: use lower_snake_case named after the paper figure/table")
    folder = figures_dir() if profile == "tiny" else figures_dir() / profile
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    # no timestamp metadata, so re-running does not churn the committed files for nothing
    fig.savefig(path, metadata={"Software": None})
    return path
