"""Where the checkout's files are: the presets and the SLURM batch script, found beside Hydra's
conf/ (the package runs from a source checkout, installed editable: mdgan_dist.compose)."""

from __future__ import annotations

from mdgan_dist.compose import CONF_DIR

PRESET_DIR = CONF_DIR / "experiment"
SBATCH_SCRIPT = CONF_DIR.parent / "launch" / "slurm.sbatch"
