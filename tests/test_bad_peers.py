"""A buggy or hostile peer: after a correct handshake, a fake peer (procs/fake_peer.py) sends one
message that does not match the protocol, whatever its kind, iteration, announced length, actual
length or values. The real server, or the real worker, ends the run with the error that names the
peer and the stage (NaN feedback: the non-finite guard's error), never a traceback or a hang."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest

from multiproc import TINY, Job

pytestmark = pytest.mark.slow  # one job per malformed message

FAKE = Path(__file__).parent / "procs" / "fake_peer.py"
# No malformed message here waits out a timeout; comm.timeout_s also bounds the rendezvous, which
# the fake peer's start-up (Python and torch) on a loaded machine must fit in.
TIMEOUT_S = 30
OVERRIDES = [*TINY, "train.iterations=3", "log.every=1", f"comm.timeout_s={TIMEOUT_S}", "mdgan.swap_every_epochs=0"]

AT_THE_SERVER = {
    "kind": r"peer rank 1 failed during feedback of iteration 0: .*CHECKPOINT",
    "iteration": r"peer rank 1 failed during feedback of iteration 0: out of step: message of iteration 1",
    "numel": r"peer rank 1 failed during feedback of iteration 0: announced \d+ payload values, expected \d+",
    "garbage": r"peer rank 1 failed during feedback of iteration 0: malformed header \[99",
    "short": r"peer rank 1 failed during feedback of iteration 0: the message ended before the packet's \d+ bytes",
    "twice": r"peer rank 1 failed during feedback of iteration 1: out of step: message of iteration 0",
    "nan": r"rank 0: the feedback of worker rank 1 at iteration 0 is not finite",
    "nan-loss": r"rank 0: the losses reported by worker rank 1 at iteration 0 is not finite",
}
AT_THE_WORKER = {
    "kind": r"peer rank 0 failed during waiting for the server's next instruction: .*FEEDBACK",
    "garbage": r"peer rank 0 failed during waiting for the server's next instruction: malformed header \[99",
    "iteration": r"peer rank 0 failed during receiving the generated batches of iteration 0: out of step",
    "numel": r"peer rank 0 failed during receiving the generated batches of iteration 0: announced \d+ payload",
    "short": r"peer rank 0 failed during receiving the generated batches of iteration 0: the message ended before",
    "past-the-end": r"peer rank 0 failed during receiving a TRAIN for iteration 3: out of order: the next TRAIN may be for 0 to 2",
}


def run_against(tmp_path: Path, role: str, mode: str) -> tuple[str, int]:
    """The real peer's output and exit code, against a fake `role` sending `mode`."""
    job = Job(tmp_path, 2, [sys.executable, str(FAKE), role, mode], [*OVERRIDES, f"run.dir={tmp_path / 'run'}"])
    codes = job.wait(TIMEOUT_S * 4 + 30)
    real = 1 if role == "server" else 0
    return job.ranks[real].output, codes[real]


# (the fake peer's role, its malformed message, what the real peer must say): a fake worker
# against the real server, then a fake server against a real worker.
REFUSALS = [("worker", mode, said) for mode, said in AT_THE_SERVER.items()] + [
    ("server", mode, said) for mode, said in AT_THE_WORKER.items()
]


@pytest.mark.parametrize(("fake", "mode", "said"), REFUSALS, ids=[f"fake-{f}-{m}" for f, m, _ in REFUSALS])
def test_the_real_peer_refuses_a_malformed_message(tmp_path: Path, fake: str, mode: str, said: str) -> None:
    output, code = run_against(tmp_path, fake, mode)
    assert code == 1, output
    assert re.search(said, output), output
    assert "Traceback" not in output


@pytest.mark.parametrize("role", ["worker", "server"])
def test_a_longer_message_aborts_the_receiver_inside_gloo(tmp_path: Path, role: str) -> None:
    """The one malformed message the project cannot turn into its error: gloo checks a message
    against the receive buffer in its own thread and aborts the process when it is longer
    (gloo::EnforceNotMet, SIGABRT). The job still ends, at once, with gloo's reason in the log."""
    output, code = run_against(tmp_path, role, "long")
    assert code == -signal.SIGABRT, output
    assert "Received data size doesn't match expected size" in output
