"""The machine a benchmark ran on, for the report's first line and its JSON."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(device: str, most_processes: int) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "cpus": cores,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "device": device,
        "most_processes": most_processes,
        "oversubscribed": most_processes > cores,
    }
