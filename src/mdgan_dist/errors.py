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
