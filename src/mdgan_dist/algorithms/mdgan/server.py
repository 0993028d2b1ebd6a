"""The MD-GAN server (rank 0): generate k batches, hand them out, aggregate the feedback, step G."""

from __future__ import annotations

import errno
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mdgan_dist.algorithms.aggregation import AGGREGATIONS, Judgements
from mdgan_dist.algorithms.components import label_classes
from mdgan_dist.algorithms.ema import final_generator
from mdgan_dist.algorithms.finite import all_finite, require_finite_state
from mdgan_dist.algorithms.handshake import greet_workers, refuse_workers
from mdgan_dist.algorithms.mdgan.class_sets import post_class_sets, read_class_sets
from mdgan_dist.algorithms.mdgan.compute import FEEDBACK, TRAINING, Generated, GeneratorCompute
from mdgan_dist.algorithms.mdgan.message import BatchMessage, FeedbackMessage, Framing, wire_dtype
from mdgan_dist.algorithms.mdgan.roster import Roster
from mdgan_dist.algorithms.mdgan.schedule import (
    control_follows,
    derangement,
    feedback_batch,
    swap_period,
    training_batch,
)
from mdgan_dist.algorithms.role import RoleContext
from mdgan_dist.algorithms.scoring import Scoring
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
from mdgan_dist.config import OnError, resolved_k, to_dict, trajectory_settings
from mdgan_dist.distributed.protocol import Checkpoint, Feedback, Stop, SwapOrder, Train
from mdgan_dist.distributed.transport import Posted, Transfer
from mdgan_dist.errors import CheckpointError, ConfigError, NonFiniteError, PeerError
from mdgan_dist.resources import write_peer_stats
from mdgan_dist.run_logging import WORKERS_FILE, RunLogger

log = logging.getLogger(__name__)


@dataclass
class Round:
    """One iteration's generated batches, from generation to the G step."""

    iteration: int
    generated: Generated  # the k batches with their graph (and, stale, the snapshot that made them)
    control: bool  # a control message follows this iteration
    stop: bool  # a stop was requested before this iteration was sent
    generate_seconds: float
    assignment: dict[int, list[int]] = field(default_factory=dict)  # rank -> per slot, the batch of its feedback
    posted: Posted | None = None
    answered: list[int] = field(default_factory=list)  # the ranks whose feedback G's step used


class Server:
    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx
        self.cfg = cfg = ctx.cfg
        self.transport = transport = ctx.transport
        self.run_dir = ctx.run_dir
        per_rank = cfg.mdgan.workers_per_rank
        k = resolved_k(cfg.mdgan, ctx.num_workers)
        self.roster = Roster(ctx.num_workers // per_rank, per_rank, k, cfg.fault.tolerate_worker_loss)
        workers = self.roster.live
        self.compute = GeneratorCompute(cfg, ctx.image_shape, ctx.num_classes, self.roster.k, ctx.device)
        self.rule = AGGREGATIONS[cfg.mdgan.aggregate]
        self.class_sets: dict[int, list[frozenset[int]]] = {}  # rank -> per slot, the classes its shard holds
        batch, dtype, wire = cfg.train.batch_size, wire_dtype(cfg.comm.dtype), transport.wire
        classes = label_classes(cfg, ctx.num_classes)
        # Packets are allocated once and reused; two per worker and direction, because with
        # mdgan.overlap the next iteration's are filled while this one's are on the wire.
        self.outgoing = {
            rank: [BatchMessage(per_rank, batch, ctx.image_shape, classes, dtype, wire) for _ in range(2)]
            for rank in workers
        }
        self.incoming = {
            rank: [FeedbackMessage(per_rank, batch, ctx.image_shape, dtype, wire, self.rule.verdicts) for _ in range(2)]
            for rank in workers
        }
        self.batch_numel = self.outgoing[workers[0]][0].payload.numel()
        self.feedback_numel = self.incoming[workers[0]][0].payload.numel()
        self.replies = {rank: transport.empty_header() for rank in workers}
        self.framing = {rank: Framing() for rank in workers}
        self.quorum = cfg.mdgan.quorum or len(workers)
        self.late: dict[int, Posted] = {}  # mdgan.quorum: ranks whose feedback has not arrived yet
        self.late_discarded = 0
        self.swaps = 0
        # The bytes of every iteration so far (checkpointed: a resumed run counts on, its new
        # handshake aside): what training has cost the server's link.
        self.bytes_trained = 0
        self.trajectory = trajectory_settings(cfg, ctx.num_workers)
        self.disk_full_at = ctx.faults.checkpoint_errors.get(0)  # fault.checkpoint_error at the server
        # `touch <run_dir>/STOP`: checkpoint after the next iteration sent and end cleanly (SLURM's
        # pre-time-limit signal does this through launch/slurm.sbatch).
        self.stop_file = self.run_dir / "STOP"

    def run(self) -> None:
        cfg = self.cfg
        start, period = self.start()
        finished = True
        scoring, g = Scoring(cfg, self.ctx.num_classes, self.ctx.device), self.compute
        with RunLogger(self.run_dir, cfg.log.progress, start, "MD-GAN") as logger:
            ahead: Round | None = None
            for iteration in logger.progress(range(start, cfg.train.iterations), cfg.train.iterations):
                started, transport = time.perf_counter(), self.transport
                sent, received = transport.bytes_sent, transport.bytes_recv
                messages_sent, messages_received = transport.messages_sent, transport.messages_recv
                late_before = self.late_discarded
                current = ahead or self.send(self.generate(iteration, period))
                ahead = None
                if cfg.mdgan.overlap and not current.control:
                    # Sent while the workers compute on this iteration: made by G before this
                    # iteration's step, a one-step staleness.
                    ahead = self.send(self.generate(iteration + 1, period, stale=True))
                d_losses, g_losses, timings = self.finish(current)
                done, last = iteration + 1, iteration + 1 == cfg.train.iterations
                if period and done % period == 0:
                    self.order_swap(iteration)
                self.bytes_trained += transport.bytes_sent - sent + transport.bytes_recv - received
                if done % cfg.log.every == 0 or last:
                    logger.scalars(
                        done,
                        g_loss=sum(g_losses) / len(g_losses),
                        d_loss=sum(d_losses) / len(d_losses),
                        d_loss_per_worker=d_losses,
                        server_bytes_sent=transport.bytes_sent - sent,
                        server_bytes_recv=transport.bytes_recv - received,
                        server_bytes_total=self.bytes_trained,
                        server_messages_sent=transport.messages_sent - messages_sent,
                        server_messages_recv=transport.messages_recv - messages_received,
                        iteration_seconds=time.perf_counter() - started,
                        swaps=self.swaps,
                        feedbacks_late=self.late_discarded - late_before,
                        lists=self.ranks_of(current),
                        **timings,
                    )
                scoring.after(done, last, g.generator, g.average, logger)
                if current.stop or (cfg.checkpoint.every and (done % cfg.checkpoint.every == 0 or last)):
                    self.checkpoint(done)
                if current.stop and not last:
                    self.stop_file.unlink(missing_ok=True)
                    log.info("stop requested: checkpoint of iteration %d written, continue with resume=auto", done)
                    finished = False
                    break
        stop_order = self.transport.header(Stop(cfg.train.iterations, finished))
        self.exchange("stop", sends=[(rank, stop_order) for rank in self.roster.live])
        self.roster.write_summary(self.run_dir / WORKERS_FILE)
        write_peer_stats(
            self.run_dir,
            "mdgan server",
            self.transport,
            swaps=self.swaps,
            feedbacks_late=self.late_discarded,
        )
        if finished:
            final = final_generator(g.generator, g.average, cfg.train.iterations)
            torch.save(final, self.run_dir / "generator.pt")

    def start(self) -> tuple[int, int | None]:
        """Resume (or not), greet the workers; returns the first iteration and the swap period."""
        try:
            start = self.resume()
        except ConfigError:
            refuse_workers(self.ctx, self.roster.live)
            raise
        shard_sizes = greet_workers(self.ctx, start, self.roster.live)
        if self.rule.class_sets:
            posted, buffers = post_class_sets(
                self.transport, self.roster.live, self.roster.per_rank, self.ctx.num_classes
            )
            self.exchange_wait(posted)
            self.class_sets = read_class_sets(self.transport, buffers, self.roster.live)
        # Every rank derived the same shards (job.plan_data); the handshake gave each process's total.
        period = swap_period(self.ctx.plan.shard_sizes, self.cfg.train.batch_size, self.cfg.mdgan.swap_every_epochs)
        log.info(
            "%d workers on %d processes, their shard sizes %s, k=%d, swap every %s iterations",
            self.roster.workers,
            len(self.roster.live),
            shard_sizes,
            self.roster.k,
            period,
        )
        return start, period

    def resume(self) -> int:
        """Loads the checkpoint resume= asks for, if any; returns the iteration to start from."""
        if self.cfg.resume == "never":
            return 0
        if self.cfg.resume == "auto":
            found, refused = newest_complete(self.run_dir, self.trajectory, len(self.roster.live))
            for reason in refused:
                log.warning("not resuming from it: %s", reason)
            if found is None:
                return 0
        else:
            found = verify(Path(self.cfg.resume), self.trajectory, len(self.roster.live))
        state, g = load_checkpoint(found.directory / SERVER_FILE, self.ctx.device), self.compute
        g.generator.load_state_dict(state["generator"])
        g.optimizer.load_state_dict(state["optimizer"])
        if g.average is not None:
            g.average.load_state_dict(state["average"])
        g.noise.set_state(state["noise"])
        self.swaps = state["swaps"]
        self.bytes_trained = state.get("bytes_trained", 0)  # absent from checkpoints of older versions
        torch.set_rng_state(state["rng"])
        log.info("resuming from %s at iteration %d", found.directory, found.iteration)
        return found.iteration

    def checkpoint(self, done: int) -> None:
        """Workers write their state first; the server's file and then the manifest complete it."""
        stage = f"checkpoint at iteration {done}"
        order = self.transport.header(Checkpoint(done))
        live = self.roster.live
        self.exchange(
            stage, sends=[(rank, order) for rank in live], recvs=[(rank, self.replies[rank]) for rank in live]
        )
        failed = [
            rank
            for rank in self.roster.live
            if self.transport.expect(self.replies[rank], rank, stage, Checkpoint, iteration=done).failed
        ]
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
        """The server's file, then the manifest that makes the checkpoint complete."""
        g = self.compute
        state = {
            "iteration": done,
            "generator": g.generator.state_dict(),
            "optimizer": g.optimizer.state_dict(),
            "average": None if g.average is None else g.average.state_dict(),
            "noise": g.noise.get_state(),
            "swaps": self.swaps,
            "bytes_trained": self.bytes_trained,
            "rng": torch.get_rng_state(),
            "config": to_dict(self.cfg),
        }
        require_finite_state(state, 0, done, "the server's checkpoint")
        if self.disk_full_at == done:
            raise OSError(errno.ENOSPC, "No space left on device (fault.checkpoint_error)", str(directory))
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
        stop = self.transport.header(Stop(done, finished=False))
        self.exchange("stop after a failed checkpoint", sends=[(rank, stop) for rank in self.roster.live])
        raise CheckpointError(
            f"{message}. Free some space and continue with resume=auto, or set checkpoint.on_error=warn to train on"
        )

    def generate(self, iteration: int, period: int | None, stale: bool = False) -> Round:
        """G's k batches of one iteration, copied into every worker's packet; stale: made through
        a copy of G's parameters (mdgan.overlap, GeneratorCompute.generate)."""
        started = time.perf_counter()
        cfg, k = self.cfg, self.roster.k
        generated = self.compute.generate(stale)
        samples, labels = generated.batches.detach(), generated.labels
        for rank in self.roster.live:
            message = self.outgoing[rank][iteration % 2]
            for slot, worker in enumerate(self.roster.positions(rank)):
                for row, index in ((TRAINING, training_batch(worker, k)), (FEEDBACK, feedback_batch(worker, k))):
                    message.put(slot, row, samples[index], None if labels is None else labels[index])
        done = iteration + 1
        stop = self.stop_file.exists()
        control = stop or control_follows(done, cfg.train.iterations, period, cfg.checkpoint.every)
        return Round(iteration, generated, control, stop, time.perf_counter() - started)

    def send(self, batches: Round) -> Round:
        """Posts the batches to every worker that is not late, and the receives of their feedback."""
        self.take_late_feedback(everyone=batches.control)
        k, parity = self.roster.k, batches.iteration % 2
        train = Train(batches.iteration, batches.control, self.batch_numel)
        sends, recvs = [], []
        for rank in self.roster.live:
            if rank in self.late:
                continue
            sends += self.framing[rank].send_train(rank, train, self.outgoing[rank][parity], self.transport)
            self.incoming[rank][parity].arm()
            recvs.append((rank, self.incoming[rank][parity].buffer))
            batches.assignment[rank] = [feedback_batch(worker, k) for worker in self.roster.positions(rank)]
        batches.posted = self.transport.post(f"training iteration {batches.iteration}", sends, recvs)
        return batches

    def finish(self, batches: Round) -> tuple[list[float], list[float], dict[str, float]]:
        """Waits for the feedback (all of it, or mdgan.quorum answers), aggregates it, steps G.

        Returns the answering workers' D and G losses, and where the iteration's time went."""
        assert batches.posted is not None
        started = time.perf_counter()
        if self.quorum < len(batches.assignment):
            answered = self.transport.wait_any(batches.posted, self.quorum)
            for rank in batches.posted.open:
                self.late[rank] = batches.posted
        else:
            self.exchange_wait(batches.posted)
            answered = [rank for rank in self.roster.live if rank in batches.assignment]
        waited = time.perf_counter() - started
        stage, parity = f"feedback of iteration {batches.iteration}", batches.iteration % 2
        answers = [
            self.transport.expect(
                self.incoming[rank][parity].header,
                rank,
                stage,
                Feedback,
                iteration=batches.iteration,
                numel=self.feedback_numel,
            )
            for rank in answered
        ]
        answered, answers = self.usable_answers(batches.iteration, answered, answers)
        started = time.perf_counter()
        self.compute.step(batches.generated, self.judgements(batches, answered), batches.iteration + 1)
        backward = time.perf_counter() - started
        if batches.control:  # the late feedback is in before the control message goes out
            self.take_late_feedback(everyone=True)
        worker_d = [answer.d_seconds for answer in answers]
        worker_feedback = [answer.feedback_seconds for answer in answers]
        timings = {
            "time_generate": batches.generate_seconds,
            "time_wait": waited,
            "time_backward": backward,
            "time_worker_d": sum(worker_d) / len(answers),
            "time_worker_feedback": sum(worker_feedback) / len(answers),
            "time_worker_max": max(d + f for d, f in zip(worker_d, worker_feedback, strict=True)),
            "feedbacks_used": len(answered) * self.roster.per_rank,
        }
        batches.answered = answered
        return [answer.d_loss for answer in answers], [answer.g_loss for answer in answers], timings

    def judgements(self, batches: Round, answered: list[int]) -> Judgements:
        """What the answering workers sent, judge by judge (rank, then slot), in float32 on the
        device, with what the aggregation rule needs besides the feedback."""
        device, messages = self.ctx.device, [self.incoming[rank][batches.iteration % 2] for rank in answered]

        def per_judge(values: list[torch.Tensor | None]) -> list[torch.Tensor]:
            return [row.to(device, torch.float32) for rows in values if rows is not None for row in rows]

        return Judgements(
            feedbacks=per_judge([message.feedback for message in messages]),
            batch_of=[batch for rank in answered for batch in batches.assignment[rank]],
            num_batches=self.compute.k,
            labels=batches.generated.labels,
            verdicts=per_judge([message.verdicts for message in messages]) if self.rule.verdicts else None,
            holds=[held for rank in answered for held in self.class_sets[rank]] if self.rule.class_sets else None,
        )

    def usable_answers(
        self, iteration: int, answered: list[int], answers: list[Feedback]
    ) -> tuple[list[int], list[Feedback]]:
        """Each answer's packet arrived whole, and (the non-finite guard, server side) its losses and
        feedback are finite. A worker whose answer is not ends the run (PeerError, NonFiniteError), or
        with fault.tolerate_worker_loss is dropped and its feedback left out of G's step."""
        parity, kept = iteration % 2, []
        # The usual case in one check: finite payloads also hold no mark of a short message.
        losses = [loss for answer in answers for loss in (answer.d_loss, answer.g_loss)]
        if all(map(math.isfinite, losses)) and all_finite([self.incoming[rank][parity].payload for rank in answered]):
            return answered, answers
        for rank, answer in zip(answered, answers, strict=True):
            try:
                self.incoming[rank][parity].require_whole(self.transport, rank, f"feedback of iteration {iteration}")
            except PeerError as error:
                if not self.roster.tolerant:
                    raise
                self.roster.drop({rank: error})
                continue
            quantity = None
            if not all(math.isfinite(loss) for loss in (answer.d_loss, answer.g_loss)):
                quantity = f"the losses reported by worker rank {rank}"
            elif not all_finite([self.incoming[rank][parity].payload]):  # the feedback and any verdicts
                quantity = f"the feedback of worker rank {rank}"
            if quantity is None:
                kept.append((rank, answer))
            elif self.roster.tolerant:
                self.roster.drop(
                    {rank: PeerError(0, rank, f"feedback of iteration {iteration}", f"{quantity} is not finite")}
                )
            else:
                raise NonFiniteError(0, iteration, quantity)
        return [rank for rank, _ in kept], [answer for _, answer in kept]

    def ranks_of(self, batches: Round) -> dict[str, list[int]] | None:
        """mdgan.quorum below N: who got this iteration's batches, and whose feedback was used."""
        if self.quorum == len(self.outgoing):
            return None
        return {"sent_ranks": sorted(batches.assignment), "feedback_ranks": sorted(batches.answered)}

    def take_late_feedback(self, everyone: bool) -> None:
        """mdgan.quorum: receives, and discards, the feedback that arrived after its iteration's
        quorum; waits for it when fewer than a quorum of workers are free, or when everyone must be
        (a control message follows)."""
        for posted in {id(posted): posted for posted in self.late.values()}.values():
            self.forget_late(self.transport.ready(posted))
        free = len(self.roster.live) - len(self.late)
        for rank, posted in list(self.late.items()):
            if not everyone and free >= self.quorum:
                break
            self.forget_late(self.transport.wait_any(posted, 1, peers=[rank]))
            free += 1

    def forget_late(self, ranks: list[int]) -> None:
        for rank in ranks:
            del self.late[rank]
            self.late_discarded += 1

    def order_swap(self, iteration: int) -> None:
        """Tells every live worker where to send its D and where the next one comes from: one order
        per worker, a process's in slot order."""
        roster = self.roster
        if roster.workers < 2:
            return
        targets = derangement(roster.workers, self.cfg.train.seed, self.swaps)
        sources = {target: worker for worker, target in enumerate(targets)}
        sends = []
        for rank in roster.live:
            for worker in roster.positions(rank):
                order = SwapOrder(
                    iteration, send_to=roster.address(targets[worker]), receive_from=roster.address(sources[worker])
                )
                sends.append((rank, self.transport.header(order)))
        self.exchange(f"swap order after iteration {iteration}", sends=sends)
        self.swaps += 1

    def exchange(self, stage: str, sends: Sequence[Transfer] = (), recvs: Sequence[Transfer] = ()) -> None:
        """The transport's exchange; a worker that fails is dropped if fault.tolerate_worker_loss."""
        self.exchange_wait(self.transport.post(stage, sends, recvs))

    def exchange_wait(self, posted: Posted) -> None:
        """With lost workers tolerated, every wait on the workers lasts 2 x timeout_s: a worker may
        first spend timeout_s in a swap with a partner that went silent (a checkpoint order follows
        a swap order at once)."""
        patience = 2 if self.roster.tolerant else 1
        self.roster.drop(self.transport.wait(posted, tolerate=self.roster.tolerant, patience=patience))
