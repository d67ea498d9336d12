"""The EVS property checker (protocol.md section 9) over JSON Lines traces (api.md section 4).

Shared by ``evs check``, the simulator and the tests; it imports only ``evs.types``,
``evs.errors``, ``evs.trace`` and the standard library, so it can judge a real cluster.
"""

from evs.check.properties import check_events, check_files
from evs.check.report import PROPERTIES, Report, Violation

__all__ = ["PROPERTIES", "Report", "Violation", "check_events", "check_files"]
