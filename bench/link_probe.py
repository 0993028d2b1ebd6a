"""What a link of a star (links.py) carries: one TCP stream from one rank's namespace to another's,
counted and timed by the receiver from its first byte to the sender's close."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from links import Node

PORT = 5001  # in the receiver's namespace, where nothing else listens
CHUNK = 2**20

RECEIVER = """
import socket, sys, time
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
connection, _ = server.accept()
received, first = 0, None
while data := connection.recv(1 << 20):
    first = first or time.perf_counter()
    received += len(data)
print(received, time.perf_counter() - first if first else 0.0, flush=True)
"""

SENDER = """
import socket, sys
left, chunk = int(sys.argv[3]), bytes(int(sys.argv[4]))
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as connection:
    while left > 0:
        connection.sendall(chunk[:left])
        left -= len(chunk)
"""


@dataclass(frozen=True)
class Transfer:
    sent: int
    received: int
    seconds: float

    @property
    def bits_per_second(self) -> float:
        return self.received * 8 / self.seconds


def transfer(sender: Node, receiver: Node, size: int, timeout_s: float = 120.0) -> Transfer:
    """`size` bytes from sender to receiver over their links, as the receiver saw them."""
    address = [receiver.address, str(PORT)]
    listen = receiver.command([sys.executable, "-c", RECEIVER, *address])
    with subprocess.Popen(listen, stdout=subprocess.PIPE, text=True) as reading:
        try:
            if reading.stdout.readline().strip() != "listening":
                raise RuntimeError(f"the receiver in {receiver.namespace} did not start listening")
            send = sender.command([sys.executable, "-c", SENDER, *address, str(size), str(CHUNK)])
            subprocess.run(send, check=True, timeout=timeout_s)
            received, seconds = reading.communicate(timeout=timeout_s)[0].split()
        finally:
            if reading.poll() is None:
                reading.kill()
    return Transfer(size, int(received), float(seconds))
