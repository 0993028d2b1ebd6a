"""Launcher environment, process group and the point-to-point transport of the wire protocol."""
