"""bench/links.py and the jobs it carries: a star of network namespaces is built as it says, and
leaves nothing behind however its block ends; its ranks reach each other and the caller's
namespace does not reach them; the trainer runs across it, and a job past its timeout ends with
every rank. Needs root and iproute2: skipped elsewhere. No timing is asserted."""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from jobs import Runner, Spec
from link_probe import transfer
from links import LinksError, Star, namespaces, pids, run, unavailable
from links_launch import LinksLaunch
from multiproc import TINY, trainer_processes
from sections.analytic import analytic_iteration_bytes

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"real links: {unavailable()}")

RATE = 10**8  # 100 Mbit/s


def assert_nothing_left(star: Star) -> None:
    assert not [name for name in namespaces() if name.startswith(star.prefix)]
    in_root = run("ip", "-o", "link", "show")
    interfaces = [star.bridge, *(node.interface for node in star.nodes), *map(star.hub_side, star.nodes)]
    assert not [name for name in interfaces if f" {name}:" in in_root or f" {name}@" in in_root]


def test_a_star_is_built_as_it_says_and_removed_whole() -> None:
    with Star(3, RATE) as star:
        assert set(namespaces()) >= {star.hub, *(node.namespace for node in star.nodes)}
        for node in star.nodes:
            addresses = run("ip", "-n", node.namespace, "-o", "-4", "addr", "show")
            assert f"inet {node.address}/24" in addresses and node.interface in addresses
            assert "<LOOPBACK,UP," in run("ip", "-n", node.namespace, "link", "show", "lo")
        # Both ends of every link shaped at the rate: what a rank sends and what it receives.
        for namespace, interface in star.links():
            (qdisc,) = (line for line in run("tc", "-n", namespace, "qdisc", "show", "dev", interface).splitlines())
            assert qdisc.startswith("qdisc tbf") and "rate 100Mbit" in qdisc
        assert len(star.links()) == 2 * 3
    assert_nothing_left(star)


def test_a_raise_inside_the_block_kills_what_runs_in_the_star() -> None:
    with pytest.raises(RuntimeError, match="inside the block"), Star(2) as star:
        sleeper = subprocess.Popen(star.nodes[1].command(["sleep", "600"]))
        deadline = time.monotonic() + 30
        while sleeper.pid not in pids(star.nodes[1].namespace):  # ip netns exec becomes the sleep
            assert time.monotonic() < deadline, "the sleep never entered its namespace"
            time.sleep(0.05)
        raise RuntimeError("inside the block")
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    assert_nothing_left(star)


def test_a_set_up_failing_half_way_leaves_nothing() -> None:
    star = Star(3, rate_bits=0)  # tc refuses a rate of 0, after the namespaces and veths are made
    with pytest.raises(LinksError, match="tc -n"), star:
        pass
    assert_nothing_left(star)


def test_ranks_reach_each_other_and_the_callers_namespace_does_not_reach_them() -> None:
    size = 2**20
    with Star(3, RATE) as star:
        for sender, receiver in ((1, 0), (2, 1)):
            done = transfer(star.nodes[sender], star.nodes[receiver], size)
            assert done.received == done.sent == size
        # The addresses are no address of this namespace, and nothing of the star is here to route
        # to them: a connection from here would leave by the default route, if any, not reach the star.
        for node in star.nodes:
            with socket.socket() as probe, pytest.raises(OSError) as refused:
                probe.bind((node.address, 0))
            assert refused.value.errno == errno.EADDRNOTAVAIL
            route = subprocess.run(["ip", "route", "get", node.address], capture_output=True, text=True, check=False)
            assert not any(f"dev {name}" in route.stdout for name in (node.interface, star.bridge))
        assert star.prefix not in run("ip", "-o", "link", "show")


@pytest.mark.slow
def test_the_trainer_runs_across_shaped_links_and_leaves_nothing(tmp_path: Path) -> None:
    runner = Runner(4, TINY, [], tmp_path, timeout_s=240)
    with Star(3, RATE) as star:
        result = runner(Spec("mdgan", 2, ("comm.timeout_s=60",)), LinksLaunch(star, "100 Mbit/s"))
        run_dir = next(tmp_path.glob("*-mdgan-n2"))
        assert not trainer_processes(run_dir)
    assert_nothing_left(star)
    assert [record["iteration"] for record in result.records] == [1, 2, 3, 4]
    assert sorted(result.stats) == [0, 1, 2] and result.launch == "links, 100 Mbit/s"
    # Every byte of an iteration went over the links, as the paper counts them.
    assert result.steady_bytes() == analytic_iteration_bytes(result.cfg, 2)


@pytest.mark.slow
def test_a_job_past_its_timeout_is_ended_with_every_rank(tmp_path: Path) -> None:
    runner = Runner(100000, TINY, [], tmp_path, timeout_s=5)
    with Star(3, RATE) as star:
        with pytest.raises(subprocess.TimeoutExpired):
            runner(Spec("mdgan", 2, ("comm.timeout_s=60",)), LinksLaunch(star, "100 Mbit/s"))
        assert not [pid for node in star.nodes for pid in pids(node.namespace)]
        assert not trainer_processes(next(tmp_path.glob("*-mdgan-n2")))
    assert_nothing_left(star)
