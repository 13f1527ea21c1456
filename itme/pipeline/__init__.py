"""Orchestration: config models, stages, run(), validate(), the demo."""

from itme.pipeline._compute import with_scheduler
from itme.pipeline._config import Config, load_config
from itme.pipeline._reference import config_reference
from itme.pipeline._run import RunResult, demo_config_text, run, run_demo, validate, warm_up
from itme.pipeline._stages import OUTPUTS, STAGE_NAMES

__all__ = [
    "OUTPUTS",
    "STAGE_NAMES",
    "Config",
    "RunResult",
    "config_reference",
    "demo_config_text",
    "load_config",
    "run",
    "run_demo",
    "validate",
    "warm_up",
    "with_scheduler",
]
