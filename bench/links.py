"""Real links on one machine: a star of network namespaces, one per rank, each joined by a veth pair
to a bridge in a hub namespace, every link shaped both ways by a token bucket (tc tbf). Processes
placed in them talk over TCP as the nodes of a cluster do, through a switch, at the link's rate.

    with Star(5, rate_bits=10**8) as star:        # 5 ranks, 100 Mbit/s each way on every link
        subprocess.run(star.nodes[0].command(["python", "-m", "http.server"]))

Needs root and iproute2 (ip, tc). Every name carries a prefix of this instance (the pid and a
count), so two stars never collide and a leftover says whose it is. Leaving the block, also by an
exception or a set-up that failed half way, kills every process in the star's namespaces and
deletes them, which deletes their veths and the bridge: nothing is left behind.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from types import TracebackType

SUBNET = "10.77.0"  # rank r is SUBNET.(r + 1)/24, an address that exists inside the star only
IFNAMSIZ = 15  # the longest interface name the kernel takes
# The bucket: what a link may send at once after being idle. At least one 64 KiB frame, the
# largest the veth hands over (tbf would split a larger one in software); and 1 ms of the rate, the
# kernel's lateness in waking the qdisc on a busy machine, below which tokens spill and the link
# runs slower than its rate.
BURST_SECONDS = 1e-3
BURST_FLOOR = 64 * 1024
# The queue in front of each bucket: large enough for every TCP window of a job in flight, so
# that the links delay packets and never drop them (a drop would time loss recovery, not the rate).
QUEUE_BYTES = 16 * 2**20
KILL_WAIT_S = 10.0  # how long killed processes may take to leave the namespaces

_instances = itertools.count()


class LinksUnavailable(RuntimeError):
    """The links cannot be built on this machine (not root, or no iproute2)."""


class LinksError(RuntimeError):
    """A command building or removing the links failed; the message has the command and its error."""


@dataclass(frozen=True)
class Node:
    """One rank's end of the star."""

    rank: int
    namespace: str
    address: str
    interface: str  # the veth end inside the rank's namespace

    def command(self, argv: list[str]) -> list[str]:
        """argv run inside this rank's namespace (the process keeps the caller's environment)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


def unavailable() -> str | None:
    """Why the links cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs and tc)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    return f"needs iproute2: {', '.join(missing)} not found" if missing else None


def burst_bytes(rate_bits: int) -> int:
    return max(BURST_FLOOR, int(rate_bits / 8 * BURST_SECONDS))


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LinksError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def namespaces() -> list[str]:
    """Every named network namespace on the machine ("NAME (id: 3)" lines)."""
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def pids(namespace: str) -> list[int]:
    return [int(pid) for pid in run("ip", "netns", "pids", namespace).split()]


class Star:
    """`ranks` namespaces around a hub; rate_bits=None leaves the links unshaped (the veths' own speed)."""

    def __init__(self, ranks: int, rate_bits: int | None = None) -> None:
        if not 1 <= ranks <= 254:
            raise ValueError(f"ranks={ranks}: a star holds 1 to 254 ranks (one /24)")
        self.prefix = f"mdl{os.getpid():x}-{next(_instances):x}"
        self.rate_bits = rate_bits
        self.hub = f"{self.prefix}-hub"
        self.bridge = f"{self.prefix}br"
        self.nodes = [
            Node(rank, f"{self.prefix}-rank{rank}", f"{SUBNET}.{rank + 1}", f"{self.prefix}r{rank}")
            for rank in range(ranks)
        ]
        if len(self.hub_side(self.nodes[-1])) > IFNAMSIZ:
            raise ValueError(f"interface {self.hub_side(self.nodes[-1])} is longer than {IFNAMSIZ} characters")

    def hub_side(self, node: Node) -> str:
        """The veth end of a rank's link in the hub, a port of the bridge."""
        return f"{self.prefix}h{node.rank}"

    def links(self) -> list[tuple[str, str]]:
        """(namespace, interface) of every veth end: each one shapes what leaves through it."""
        return [
            pair for node in self.nodes for pair in ((node.namespace, node.interface), (self.hub, self.hub_side(node)))
        ]

    def __enter__(self) -> Star:
        reason = unavailable()
        if reason:
            raise LinksUnavailable(f"real links: {reason}")
        try:
            self.build()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.remove()

    def build(self) -> None:
        run("ip", "netns", "add", self.hub)
        run("ip", "-n", self.hub, "link", "set", "lo", "up")
        run("ip", "-n", self.hub, "link", "add", self.bridge, "type", "bridge")
        run("ip", "-n", self.hub, "link", "set", self.bridge, "up")
        for node in self.nodes:
            hub_side = self.hub_side(node)
            run("ip", "netns", "add", node.namespace)
            run("ip", "-n", node.namespace, "link", "set", "lo", "up")
            # Made inside the namespaces: no end of the pair ever appears in the caller's namespace.
            run("ip", "-n", node.namespace, "link", "add", node.interface, "type", "veth", "peer", "name", hub_side, "netns", self.hub)  # fmt: skip
            run("ip", "-n", node.namespace, "addr", "add", f"{node.address}/24", "dev", node.interface)
            run("ip", "-n", node.namespace, "link", "set", node.interface, "up")
            run("ip", "-n", self.hub, "link", "set", hub_side, "master", self.bridge, "up")
        if self.rate_bits is not None:
            rate, burst = f"{self.rate_bits}bit", str(burst_bytes(self.rate_bits))
            for namespace, interface in self.links():
                run("tc", "-n", namespace, "qdisc", "add", "dev", interface, "root", "tbf", "rate", rate, "burst", burst, "limit", str(QUEUE_BYTES))  # fmt: skip

    def drops(self) -> int:
        """Packets the links' queues dropped so far (unshaped links have no queue: 0)."""
        if self.rate_bits is None:
            return 0
        total = 0
        for namespace, interface in self.links():
            shown = json.loads(run("tc", "-n", namespace, "-s", "-j", "qdisc", "show", "dev", interface, "root"))
            total += sum(qdisc["drops"] for qdisc in shown)
        return total

    def remove(self) -> None:
        """Kills what runs in the star, then deletes its namespaces: those it made, however far the
        set-up went."""
        mine = [name for name in namespaces() if name.startswith(f"{self.prefix}-")]
        deadline = time.monotonic() + KILL_WAIT_S
        while running := [pid for name in mine for pid in pids(name)]:
            if time.monotonic() > deadline:
                raise LinksError(f"processes {running} outlived SIGKILL in {self.prefix}'s namespaces")
            for pid in running:
                with contextlib.suppress(ProcessLookupError):  # it ended between the listing and the kill
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for name in mine:
            run("ip", "netns", "delete", name)
