"""The suite's sections, in the order they run and print: each makes one table from the runner's jobs
(compute alone runs in this process)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from jobs import Runner

from .aggregation import section_aggregation
from .bytes import section_bytes
from .compute import section_compute
from .gpu import section_gpu
from .guard import section_guard
from .memory import section_memory
from .network import section_network
from .optimisations import section_optimisations
from .overlap import section_overlap
from .packing import section_packing
from .privacy import section_privacy
from .protocol import section_protocol
from .scaling import section_scaling
from .table import Table

Section = Callable[[argparse.Namespace, Runner], Table]

SECTIONS: dict[str, Section] = {
    "compute": section_compute,
    "protocol": section_protocol,
    "scaling": section_scaling,
    "bytes": section_bytes,
    "memory": section_memory,
    "optimisations": section_optimisations,
    "packing": section_packing,
    "guard": section_guard,
    "aggregation": section_aggregation,
    "privacy": section_privacy,
    "overlap": section_overlap,
    "network": section_network,
    "gpu": section_gpu,
}
# Run only when named: network needs root, builds and removes network namespaces, and takes
# minutes; gpu is sized for a GPU (its CPU run at full size takes hours).
OPT_IN = {"network", "gpu"}
