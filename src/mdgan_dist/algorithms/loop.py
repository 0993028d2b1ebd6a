"""The one training loop: every algorithm's server, or its single process, runs in it.

The loop owns what all algorithms share: resume and the handshake, the iterations from the resume
point, the progress bar, the logged scalars, sample grids and scores, stop requests, checkpoints
and their failures, the stats file and generator.pt. An algorithm (training.Training) supplies
one iteration's step, its state, and what ends its run; its worker processes write their own
checkpoint files on the loop's order (workers.Workers, worker_checkpoint.WorkerCheckpoints).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import torch

from mdgan_dist.algorithms.ema import final_generator
from mdgan_dist.algorithms.fault import disk_full_if_scheduled
from mdgan_dist.algorithms.finite import require_finite_state
from mdgan_dist.algorithms.handshake import greet_workers, refuse_workers
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.scoring import Scoring
from mdgan_dist.algorithms.training import Report, Schedule, Training
from mdgan_dist.checkpoint import (
    SERVER_FILE,
    atomic_save,
    checkpoint_dir,
    newest_complete,
    prune,
    verify,
    write_manifest,
)
from mdgan_dist.checkpoint import load as load_checkpoint
from mdgan_dist.config import OnError, to_dict
from mdgan_dist.errors import CheckpointError, ConfigError
from mdgan_dist.resources import write_peer_stats, write_stats
from mdgan_dist.run_logging import WORKERS_FILE, RunLogger
from mdgan_dist.trajectory import trajectory_settings

log = logging.getLogger(__name__)


class Loop:
    def __init__(self, ctx: RoleContext, training: Training) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.training = training
        self.workers = training.workers
        self.run_dir = ctx.run_dir
        self.schedule = Schedule(ctx.cfg, ctx.run_dir)
        self.trajectory = trajectory_settings(ctx.cfg, ctx.num_workers)
        self.disk_full_at = ctx.faults.checkpoint_errors.get(0)  # fault.checkpoint_error at the server
        # The bytes of every iteration so far (checkpointed: a resumed run counts on, its new
        # handshake aside): what training has cost the server's link.
        self.bytes_trained = 0

    def run(self) -> None:
        start = self.start()
        self.finish(self.train(start))

    def start(self) -> int:
        """Resume (or not), then the handshake; returns the first iteration."""
        workers = [] if self.workers is None else self.workers.live
        try:
            start = self.resume(len(workers))
        except ConfigError:
            if self.workers is not None:
                refuse_workers(self.ctx, workers)
            raise
        # The shard sizes the workers report, or the single process's one: the whole train split.
        sizes = self.ctx.plan.shard_sizes if self.workers is None else greet_workers(self.ctx, start, workers)
        self.training.start(sizes)
        return start

    def resume(self, workers: int) -> int:
        """Loads the checkpoint resume= asks for, if any; returns the iteration to start from."""
        cfg = self.cfg
        if cfg.resume == "never":
            return 0
        if cfg.resume == "auto":
            found, refused = newest_complete(self.run_dir, self.trajectory, workers)
            for reason in refused:
                log.warning("not resuming from it: %s", reason)
            if found is None:
                return 0
        else:
            found = verify(Path(cfg.resume), self.trajectory, workers)
        state = load_checkpoint(found.directory / SERVER_FILE, self.ctx.device)
        self.training.load_state_dict(state)
        self.bytes_trained = state.get("bytes_trained", 0)  # absent from checkpoints of older versions
        torch.set_rng_state(state["rng"])
        log.info("resuming from %s at iteration %d", found.directory, found.iteration)
        return found.iteration

    def train(self, start: int) -> bool:
        """Iterations start .. train.iterations - 1; returns whether the run finished (not when a
        stop request ended it)."""
        cfg, training, schedule = self.cfg, self.training, self.schedule
        iterations = cfg.train.iterations
        if start == iterations:  # a finished run started again: only its end is left to do
            training.conclude(iterations)
        scoring = Scoring(cfg, self.ctx.num_classes, self.ctx.device, self.ctx.plan.class_weights)
        with RunLogger(self.run_dir, cfg.log.progress, start, training.name) as logger:
            for iteration in logger.progress(range(start, iterations), iterations):
                done, last = iteration + 1, iteration + 1 == iterations
                started, before = time.perf_counter(), self.traffic()
                report = training.step(iteration, schedule)
                moved = [now - then for now, then in zip(self.traffic(), before, strict=True)]
                self.bytes_trained += sum(moved[:2])
                if done % cfg.log.every == 0 or last:
                    self.log(logger, done, report, moved, time.perf_counter() - started)
                stop = schedule.stops_after(iteration)
                if schedule.checkpoints_after(iteration):
                    self.checkpoint(done)
                if last:
                    training.conclude(done)
                scoring.after(done, last, training.generator, training.average, logger)
                if stop:
                    schedule.stop_file.unlink(missing_ok=True)
                    log.info("stop requested: checkpoint of iteration %d written, continue with resume=auto", done)
                    return False
        return True

    def traffic(self) -> list[int]:
        """The server's bytes and messages sent and received so far; nothing in one process."""
        if self.workers is None:
            return []
        transport = self.workers.transport
        return [transport.bytes_sent, transport.bytes_recv, transport.messages_sent, transport.messages_recv]

    def log(self, logger: RunLogger, done: int, report: Report, moved: list[int], seconds: float) -> None:
        """The scalars every algorithm logs, then the algorithm's own."""
        traffic: dict[str, int] = {}
        if moved:
            sent, received, messages_sent, messages_received = moved
            traffic = {
                "server_bytes_sent": sent,
                "server_bytes_recv": received,
                "server_bytes_total": self.bytes_trained,
                "server_messages_sent": messages_sent,
                "server_messages_recv": messages_received,
            }
        logger.scalars(
            done,
            g_loss=sum(report.g_losses) / len(report.g_losses),
            d_loss=sum(report.d_losses) / len(report.d_losses),
            d_loss_per_worker=report.d_losses,
            **traffic,
            iteration_seconds=seconds,
            lists=report.lists,
            **report.scalars,
        )

    def checkpoint(self, done: int) -> None:
        """The workers write their files first; the server's file and then the manifest complete
        the checkpoint."""
        failed = [] if self.workers is None else self.workers.checkpoint(done)
        directory = checkpoint_dir(self.run_dir, done)
        try:
            if failed:
                raise OSError(f"worker rank {', '.join(map(str, failed))} could not write its file (its log says why)")
            self.write_checkpoint(directory, done)
        except OSError as error:
            self.checkpoint_failed(directory, done, error)
            return
        prune(self.run_dir, self.cfg.checkpoint.keep)

    def write_checkpoint(self, directory: Path, done: int) -> None:
        """The server's file (the loop's entries and the algorithm's state), then the manifest
        that makes the checkpoint complete."""
        state = {
            "iteration": done,
            **self.training.state_dict(),
            "bytes_trained": self.bytes_trained,
            "rng": torch.get_rng_state(),
            "config": to_dict(self.cfg),
        }
        require_finite_state(state, 0, done, "the server's checkpoint")
        disk_full_if_scheduled(self.disk_full_at, done, directory)
        atomic_save(state, directory / SERVER_FILE)
        write_manifest(directory, done, self.trajectory)

    def checkpoint_failed(self, directory: Path, done: int, error: OSError) -> None:
        """A checkpoint that cannot be completed: its folder goes (it is incomplete, and the disk
        may be full); the complete ones before it stay. Then stop, or warn (checkpoint.on_error)."""
        shutil.rmtree(directory, ignore_errors=True)
        message = (
            f"the checkpoint of iteration {done} could not be written ({error}); the complete ones before it are intact"
        )
        if self.cfg.checkpoint.on_error == OnError.warn:
            log.warning("%s; training goes on without it (checkpoint.on_error=warn)", message)
            return
        if self.workers is not None:
            self.workers.stop(done, finished=False, stage="stop after a failed checkpoint")
        raise CheckpointError(
            f"{message}. Free some space and continue with resume=auto, or set checkpoint.on_error=warn to train on"
        )

    def finish(self, finished: bool) -> None:
        """The stop order to the workers, the stats and, for a finished run, the final files."""
        training, iterations = self.training, self.cfg.train.iterations
        if self.workers is None:
            write_stats(self.run_dir, 0, training.role, self.ctx.device, **training.stats())
        else:
            self.workers.stop(iterations, finished)
            self.workers.write_summary(self.run_dir / WORKERS_FILE)
            write_peer_stats(self.run_dir, training.role, self.workers.transport, **training.stats())
        if finished:
            final = final_generator(training.generator, training.average, iterations)
            torch.save(final, self.run_dir / "generator.pt")
            training.save_final(self.run_dir)
