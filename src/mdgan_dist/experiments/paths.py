"""Where the checkout's files are: Hydra's conf/, the presets, the SLURM batch script (as in
mdgan_dist.train, the package runs from a source checkout, installed editable)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = REPO_ROOT / "conf"
PRESET_DIR = CONF_DIR / "experiment"
SBATCH_SCRIPT = REPO_ROOT / "launch" / "slurm.sbatch"
