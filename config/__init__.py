"""Stack configuration: models, presets, semantic checks and the loader."""

from config.findings import ConfigError, Finding, Severity
from config.load import LoadedStack, StackInputs, build_spec, load_from_pulumi, load_stack_file, read_stack_file
from config.models import ClusterSpec

__all__ = [
    "ClusterSpec",
    "ConfigError",
    "Finding",
    "LoadedStack",
    "Severity",
    "StackInputs",
    "build_spec",
    "load_from_pulumi",
    "load_stack_file",
    "read_stack_file",
]
