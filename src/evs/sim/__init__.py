"""Deterministic simulator: many processors, a virtual clock and a hostile network.

Product code, not a test helper: ``evs sim`` runs it, tests drive it through ``scenario``.
"""

from evs.sim.cluster import Cluster, SimResult
from evs.sim.options import SimOptions, draw_options

__all__ = ["Cluster", "SimOptions", "SimResult", "draw_options"]
