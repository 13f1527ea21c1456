"""Orchestration: config models, stages, run(), validate(), the demo."""

from ._config import Config, load_config
from ._reference import config_reference
from ._run import RunResult, demo_config_text, run, run_demo, validate
from ._stages import STAGE_NAMES

__all__ = [
    "STAGE_NAMES",
    "Config",
    "RunResult",
    "config_reference",
    "demo_config_text",
    "load_config",
    "run",
    "run_demo",
    "validate",
]
