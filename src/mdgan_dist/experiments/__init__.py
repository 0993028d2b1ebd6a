"""Experiment grids: the MD-GAN paper's comparison (standalone GAN, FL-GAN, MD-GAN) as one command
that trains a grid of configurations and one that turns their run directories into a table and a plot.

    mdgan-experiment run PRESET [--root runs/experiments] [--slurm [--procs-per-node P]] [--dry-run]
                                [--only SUBSTRING] [hydra overrides...]
    mdgan-experiment results DIR [--out DIR/results]

A preset is a YAML file in conf/experiment/ (named without .yaml) or any path to one, read with
OmegaConf.load (Hydra never composes it into the trainer's config):

    name: mnist5k_small              # runs go to <root>/<name>/<configuration>
    overrides: [data=mnist5k, ...]   # the trainer's Hydra overrides shared by every configuration
    grid:                            # every combination of:
      algorithms: [standalone, flgan, mdgan]
      workers: [1, 4]                # N; standalone ignores it
      k: [1, log2]                   # integers or log2 = ceil(log2 N); only mdgan uses k
      batch_sizes: [64]              # b

Identical configurations run once (N = 1 gives k = 1 only; standalone once per b). Each has a
stable name, `mdgan-N4-k2-b64`, `flgan-N4-b64` or `standalone-b64`, which is its run directory's
name. The runner writes `grid.json` (what it launched, including N, which the run's config.yaml
lacks) and, for local runs, `train.log` into the run directory before the trainer starts. Local
runs start with torchrun, except those with a crash schedule (`fault.kill_worker`): torchrun's
agent stops every rank when one dies, so they start as one plain process per rank.

Modules: grid (preset -> configurations), rundir (the run directory's files), launcher (local runs
and SLURM jobs), results (run directories -> one summary per run), result_tables (summaries ->
results.md, the CSV files and the verdicts), targets (what it took to reach a finished generator),
stats (means over seeds, their intervals, the verdicts' rule), hparams (the grid in tensorboard's
HParams view), plots (score curves), paths (the checkout's presets
and batch script), cli (the two commands; it composes and validates each configuration's
trainer config, with mdgan_dist.compose, before anything starts); tables and formatting draw the
markdown tables and their figures (bench/suite.py draws its tables with them too).
"""
