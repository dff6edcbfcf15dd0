"""Host probing for `hyperscaler inventory` and `hyperscaler doctor`, from sysfs/procfs below a root."""

from hyperscaler.probe.doctor import CheckResult, exit_code, format_report, run_doctor, run_host_checks
from hyperscaler.probe.inventory import inventory, probe_host, render_inventory_yaml

__all__ = [
    "CheckResult",
    "exit_code",
    "format_report",
    "inventory",
    "probe_host",
    "render_inventory_yaml",
    "run_doctor",
    "run_host_checks",
]
