"""A worker process's compute in MD-GAN, without the wire: what it does with the tensors it holds
in one iteration (the server's: compute.py). The worker calls this; the bench times the same
object."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mdgan_dist.algorithms.aggregation import AGGREGATIONS
from mdgan_dist.algorithms.components import make_augment, make_discriminator, make_sampler
from mdgan_dist.algorithms.mdgan.lies import FREE_RIDERS, falsified
from mdgan_dist.algorithms.mdgan.message import FEEDBACK, TRAINING
from mdgan_dist.algorithms.mdgan.private import PrivateBatch, PrivateGradient, padded
from mdgan_dist.algorithms.mdgan.stack import DiscriminatorStack
from mdgan_dist.algorithms.steps import (
    Batch,
    discriminator_adam,
    discriminator_steps,
    fake_loss,
    generator_loss,
    r1_penalty,
    real_loss,
    verdict,
)
from mdgan_dist.config import Config, Lie
from mdgan_dist.privacy import private


@dataclass
class WorkerOutcome:
    """One iteration of a worker process's W workers."""

    feedback: torch.Tensor  # W x b x C x H x W: each slot's gradient of G's loss with respect to its X_g
    verdicts: torch.Tensor | None  # W x b: each slot's real/fake logit of its X_g, when mdgan.aggregate asks
    d_losses: list[float]  # per slot, of its last D step
    g_losses: list[float]  # per slot
    d_seconds: float  # of the D steps once the batches came: without the real half computed ahead
    feedback_seconds: float
    ahead_seconds: float  # of the real half computed ahead, before the batches came; 0 if none


@dataclass
class RealHalf:
    """The real half of a D step, computed before the step (DiscriminatorCompute.real_half_ahead)."""

    batch: Batch | PrivateBatch  # the real batch the step trains on
    losses: torch.Tensor | None  # every slot's real loss [W], its gradient in the stack's .grad; None: private
    seconds: float


class DiscriminatorCompute:
    """The discriminators of a worker process (one per worker it hosts, stacked: stack.py), their
    Adam, and per worker its real-batch sampler and the augmentation its D sees through."""

    def __init__(
        self,
        cfg: Config,
        image_shape: tuple[int, int, int],
        num_classes: int,
        shards: list[tuple[torch.Tensor, torch.Tensor]],
        workers: list[int],
        device: torch.device,
        lies: list[Lie | None] | None = None,
        noise_multiplier: float | None = None,
    ) -> None:
        """shards: the images and labels of each worker in `workers` (0-based worker indices); lies:
        how each lies (fault.byzantine_worker, lies.py), None where it does not; noise_multiplier:
        DP-SGD's sigma (privacy.noise_multiplier), given exactly when privacy.* is on."""
        if (noise_multiplier is None) == private(cfg):
            raise ValueError("a noise multiplier goes with privacy.epsilon, and only with it")
        self.gan = cfg.gan
        self.seed, self.workers = cfg.train.seed, workers
        self.lies = lies or [None] * len(workers)
        self.frozen = [slot for slot, lie in enumerate(self.lies) if lie in FREE_RIDERS]  # they never train
        self.verdicts = AGGREGATIONS[cfg.mdgan.aggregate].verdicts
        self.samplers = [
            make_sampler(cfg, images.to(device), labels.to(device), worker)
            for (images, labels), worker in zip(shards, workers, strict=True)
        ]
        augments = [make_augment(cfg, worker) for worker in workers]
        self.augments = None if augments[0] is None else [augment for augment in augments if augment is not None]
        self.stack = DiscriminatorStack(
            [make_discriminator(cfg, image_shape, num_classes, worker).to(device) for worker in workers]
        )
        self.optimizer = discriminator_adam(self.stack, cfg.optim)
        self.private = None if noise_multiplier is None else PrivateGradient(cfg, workers, noise_multiplier)
        # Lie.untrained: the fresh discriminators whose feedback it sends (one per slot, to stack
        # them; only the untrained slots' is used), never trained, never swapped.
        self.untrained = None
        if Lie.untrained in self.lies:
            fresh = [make_discriminator(cfg, image_shape, num_classes, worker, "untrained") for worker in workers]
            self.untrained = DiscriminatorStack([module.to(device) for module in fresh])
        self.ahead: RealHalf | None = None  # the next D step's real half, when computed ahead

    def iteration(self, samples: torch.Tensor, labels: torch.Tensor | None, iteration: int) -> WorkerOutcome:
        """Paper's Algorithm 1, worker side, for every slot at once: L discriminator steps against
        samples[:, TRAINING], then the feedback of the updated D on samples[:, FEEDBACK]
        (W x 2 x b x C x H x W; labels W x 2 x b); a liar's instead (lies.py)."""
        started = time.perf_counter()
        ahead = 0.0 if self.ahead is None else self.ahead.seconds
        fake = (samples[:, TRAINING], None if labels is None else labels[:, TRAINING])
        d_losses = discriminator_steps(self.step, self.real_batches(conditional=labels is not None), fake, self.gan)
        trained = time.perf_counter()
        feedback, verdicts, g_losses = self.feedback(
            samples[:, FEEDBACK], None if labels is None else labels[:, FEEDBACK]
        )
        for slot, lie in enumerate(self.lies):
            if lie is not None and lie not in FREE_RIDERS:
                feedback[slot] = falsified(lie, feedback[slot], self.seed, self.workers[slot], iteration)
        return WorkerOutcome(
            feedback, verdicts, d_losses, g_losses, trained - started, time.perf_counter() - trained, ahead
        )

    def real_batches(self, conditional: bool) -> Callable[[], Batch | PrivateBatch]:
        """Draws one real batch per slot, from the slot's own sampler: W x b x ...; with privacy.*,
        each slot's Poisson sample as its D sees it, padded (private.py)."""

        def draw() -> Batch | PrivateBatch:
            if self.ahead is not None:  # drawn with the real half computed ahead
                return self.ahead.batch
            drawn = [sampler.next_batch() for sampler in self.samplers]
            if self.private is not None:
                return padded(drawn, conditional)
            images, classes = zip(*drawn, strict=True)
            return torch.stack(images), torch.stack(classes) if conditional else None

        return draw

    def seen(self, images: torch.Tensor) -> torch.Tensor:
        """What each slot's D sees of its images: through its own augmentation, if any."""
        if self.augments is None:
            return images
        return torch.stack([augment(batch) for augment, batch in zip(self.augments, images, strict=True)])

    def real_half_ahead(self, conditional: bool) -> None:
        """mdgan.real_ahead: the real half of the next iteration's first D step, computed now, while
        the worker waits for that iteration's batches. It reads only the slots' Ds, which nothing
        changes before that step, and their real data, and it draws from the samplers and the
        augmentations in the order the step would: every number stays what it would have been."""
        assert self.ahead is None, "a real half is already computed ahead"
        started = time.perf_counter()
        batch = self.real_batches(conditional)()
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.real_half(batch)
        self.ahead = RealHalf(batch, losses, time.perf_counter() - started)

    def step(self, real: Batch | PrivateBatch, fake: Batch) -> list[float]:
        """One Adam step of every slot's D (steps.discriminator_step, batched over the slots): its
        real half, unless computed ahead, then its generated half; a free-rider's D is put back
        after it. The halves' gradients add up in .grad as one backward pass would add them."""
        stack = self.stack
        ahead, self.ahead = self.ahead, None
        if ahead is None:
            self.optimizer.zero_grad(set_to_none=True)
            real_losses = self.real_half(real)
        else:
            real_losses = ahead.losses
        losses = self.fake_half(fake)
        if real_losses is not None:  # a private worker reports the generated half only
            losses = real_losses + losses
        kept = [[param[slot].detach().clone() for param in stack.parameters()] for slot in self.frozen]
        self.optimizer.step()
        with torch.no_grad():  # a free-rider's D stays as it is; its Adam state moves as everyone's
            for slot, values in zip(self.frozen, kept, strict=True):
                for param, value in zip(stack.parameters(), values, strict=True):
                    param[slot].copy_(value)
        return losses.tolist()

    def real_half(self, real: Batch | PrivateBatch) -> torch.Tensor | None:
        """Every slot's D on its real batch: the gradient of its real loss (and R1 penalty) into the
        stack's .grad, by DP-SGD with privacy.*. Returns the losses [W]; None when private: they
        read the records, and a private worker does not report them."""
        if isinstance(real, PrivateBatch):
            assert self.private is not None  # a PrivateBatch is drawn only with privacy on
            self.private.real_half(self.stack, real)
            return None
        (images, classes), gan, stack = real, self.gan, self.stack
        seen = self.seen(images).detach().requires_grad_(gan.r1 > 0)
        output = stack.judge(seen)

        def loss(output: torch.Tensor, classes: Tensor | None) -> Tensor:
            return real_loss(output, gan.real_label, classes, gan.conditioning)

        losses = stack.per_slot(loss, output, classes)
        if gan.r1 > 0:  # every slot's at once
            losses = losses + r1_penalty(self.verdicts_of(output, classes), seen, gan.r1)
        losses.sum().backward()  # each slot's loss depends on its own D only
        return losses.detach()

    def fake_half(self, fake: Batch) -> torch.Tensor:
        """Every slot's D on its generated batch: the gradient of its generated loss added to the
        stack's .grad; returns the losses [W]."""
        (images, classes), gan, stack = fake, self.gan, self.stack

        def loss(output: torch.Tensor, classes: Tensor | None) -> Tensor:
            return fake_loss(output, classes, gan.conditioning)

        losses = stack.per_slot(loss, stack.judge(self.seen(images)), classes)
        losses.sum().backward()
        return losses.detach()

    def feedback(
        self, samples: torch.Tensor, classes: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[float]]:
        """Every slot's F_n (steps.generator_feedback, batched over the slots), its verdicts when
        mdgan.aggregate asks for them, and G's loss; an untrained liar's by its fresh D."""
        gan, stack = self.gan, self.stack
        samples = samples.detach().requires_grad_(True)

        def loss(output: torch.Tensor, classes: Tensor | None) -> Tensor:
            return generator_loss(output, gan.loss, classes, gan.conditioning)

        seen = self.seen(samples)  # once: the augmentation draws from the worker's stream
        outputs = stack.judge(seen)
        if self.untrained is not None:
            untrained = torch.tensor([lie == Lie.untrained for lie in self.lies], device=outputs.device)
            outputs = torch.where(untrained.view(-1, *[1] * (outputs.dim() - 1)), self.untrained.judge(seen), outputs)
        losses = stack.per_slot(loss, outputs, classes)
        (feedback,) = torch.autograd.grad(losses.sum(), samples)
        verdicts = self.verdicts_of(outputs.detach(), classes) if self.verdicts else None
        return feedback.contiguous(), verdicts, losses.tolist()

    def verdicts_of(self, outputs: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """Every slot's real/fake logits (steps.verdict) of its outputs [W, b(, 1 + classes)]: [W, b]."""

        def logits(output: torch.Tensor, classes: Tensor | None) -> Tensor:
            return verdict(output, classes, self.gan.conditioning)

        return self.stack.per_slot(logits, outputs, classes)

    def finite_slots(self) -> list[bool]:
        """Per slot, whether its D's parameters are all finite (finite.all_finite's sums, per slot)."""
        sums = torch.stack([param.detach().flatten(1).sum(1) for param in self.stack.parameters()]).sum(0)
        return torch.isfinite(sums).tolist()

    def poison(self, slot: int) -> None:
        """fault.nan_worker: the slot's D turns NaN, as a diverged one does."""
        with torch.no_grad():
            next(self.stack.parameters())[slot].fill_(float("nan"))

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's part. Secret streams (privacy.secret_noise) are left out: the file lies in
        the run directory, which the server may read, and knowing them undoes the noise; a resumed
        run draws new secrets."""
        assert self.ahead is None, "a checkpoint comes after a control message, with no real half ahead"
        secret = self.private is not None and self.private.secret
        return {
            "discriminators": self.stack.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "samplers": None if secret else [sampler.state_dict() for sampler in self.samplers],
            "augments": None if self.augments is None else [augment.state_dict() for augment in self.augments],
            "private": None if secret or self.private is None else self.private.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stack.load_state_dict(state["discriminators"])
        self.optimizer.load_state_dict(state["optimizer"])
        for sampler, sampler_state in zip(self.samplers, state["samplers"] or [], strict=state["samplers"] is not None):
            sampler.load_state_dict(sampler_state)
        for augment, augment_state in zip(self.augments or [], state["augments"] or [], strict=True):
            augment.load_state_dict(augment_state)
        if state.get("private") is not None:  # absent from the checkpoints of older versions
            assert self.private is not None  # the trajectory check refuses a checkpoint of other privacy settings
            self.private.load_state_dict(state["private"])
