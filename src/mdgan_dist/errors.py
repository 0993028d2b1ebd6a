"""Errors a user can act on: bad configuration, missing files, a peer that failed."""


class ConfigError(ValueError):
    """The configuration (or the files it points to) cannot work; raised before training starts."""


class PeerError(RuntimeError):
    """A peer rank failed or did not answer in time; names the peer and the protocol stage."""

    def __init__(self, rank: int, peer: int, stage: str, cause: str) -> None:
        super().__init__(f"rank {rank}: peer rank {peer} failed during {stage}: {cause}")
        self.rank = rank
        self.peer = peer
        self.stage = stage


class NonFiniteError(RuntimeError):
    """A NaN or an infinity where training needs numbers: names the rank that found it, the
    iteration and the quantity. Nothing non-finite is ever written to a checkpoint."""

    def __init__(self, rank: int, iteration: int, quantity: str) -> None:
        super().__init__(
            f"rank {rank}: {quantity} at iteration {iteration} is not finite (NaN or infinity): training diverged. "
            "Lower the learning rates (optim.d_lr, optim.g_lr) and continue from the newest checkpoint "
            "(resume=auto), which holds only finite values"
        )
        self.rank = rank
        self.iteration = iteration
        self.quantity = quantity


class CheckpointError(RuntimeError):
    """A checkpoint could not be written (a full disk, any OSError); the complete ones before it are
    intact. Raised when checkpoint.on_error=stop."""
