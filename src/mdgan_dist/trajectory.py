"""Which settings determine a run's trajectory, their fingerprint, and how two runs' settings differ."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mdgan_dist.config import Config, to_dict
from mdgan_dist.privacy import ACCOUNTING


def digest(cfg: Config) -> int:
    """A 63-bit fingerprint of the whole config, compared in the start-up handshake."""
    return fingerprint(to_dict(cfg))


# What may change when a run is resumed: none of it changes what an iteration computes.
RESUMABLE_CHANGES = ("resume", "run", "checkpoint", "log", "comm", "fault", "eval")


def trajectory_settings(cfg: Config, num_workers: int) -> dict[str, Any]:
    """Everything that determines the training trajectory, checked on resume: a checkpoint's
    manifest keeps it, so that a refusal can name each setting that differs (trajectory_differences)."""
    fields = {key: value for key, value in to_dict(cfg).items() if key not in RESUMABLE_CHANGES}
    ignored: tuple[str, ...] = ("iterations", "device", "threads")
    if cfg.privacy.epsilon is not None and cfg.privacy.noise_multiplier is None:
        ignored = ("device", "threads")  # the noise multiplier is computed to last train.iterations
    fields["train"] = {key: value for key, value in fields["train"].items() if key not in ignored}
    fields["mdgan"] = {key: value for key, value in fields["mdgan"].items() if key != "real_ahead"}  # no number
    if cfg.privacy.epsilon is not None:  # the noise and the count of a run accounted another way differ
        fields["privacy"] = {**fields["privacy"], "accounting": ACCOUNTING}
    # comm. may change on resume (backend, timeout), except the wire dtype, which rounds what travels.
    return {**fields, "num_workers": num_workers, "wire_dtype": cfg.comm.dtype}


def trajectory_differences(
    saved: dict[str, Any], current: dict[str, Any], saved_in: str = "the checkpoint"
) -> list[str]:
    """Each setting on which a saved trajectory_settings (a checkpoint's, or that of a run's
    config.yaml) and this run's differ, as "name: A in <saved_in>, B here". A setting the saved one
    lacks (added to the config since) differs only if this run moves it off its default, which
    reproduces the older code's behaviour."""
    defaults, before, now = (
        _flat(json.loads(json.dumps(s))) for s in (trajectory_settings(Config(), 1), saved, current)
    )
    missing = object()
    differences = []
    for name in sorted(before.keys() | now.keys()):
        old, new = before.get(name, defaults.get(name, missing)), now.get(name, missing)
        if old != new:
            shown = ["(absent)" if value is missing else repr(value) for value in (old, new)]
            differences.append(f"{name}: {shown[0]} in {saved_in}, {shown[1]} here")
    return differences


def changed_options(cfg: Config) -> dict[str, Any]:
    """Every option cfg sets off the schema's default, by its dotted name, as a plain value."""
    defaults = _flat(to_dict(Config()))
    return {name: value for name, value in _flat(to_dict(cfg)).items() if value != defaults[name]}


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def fingerprint(value: object) -> int:
    """63 bits of the SHA-256 of value's JSON, keys sorted."""
    text = json.dumps(value, sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
