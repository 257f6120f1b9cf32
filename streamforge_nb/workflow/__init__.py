"""Workflows: the plan, targets and their Job specs, the in-Job runner, the launchers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.workflow.batch import BATCH_KIND as BATCH_KIND
    from streamforge_nb.workflow.batch import Batch as Batch
    from streamforge_nb.workflow.kubernetes import KubernetesLauncher as KubernetesLauncher
    from streamforge_nb.workflow.launchers import JobStatus as JobStatus
    from streamforge_nb.workflow.launchers import Launcher as Launcher
    from streamforge_nb.workflow.launchers import get_launcher as get_launcher
    from streamforge_nb.workflow.launchers import launcher_for as launcher_for
    from streamforge_nb.workflow.launchers import register_launcher as register_launcher
    from streamforge_nb.workflow.pacing import launch_paced as launch_paced
    from streamforge_nb.workflow.pacing import loader_running as loader_running
    from streamforge_nb.workflow.plan import DEFAULT_IMAGE as DEFAULT_IMAGE
    from streamforge_nb.workflow.plan import Workflow as Workflow
    from streamforge_nb.workflow.processes import LocalLauncher as LocalLauncher
    from streamforge_nb.workflow.ranges import EXCHANGE_START as EXCHANGE_START
    from streamforge_nb.workflow.ranges import check_time_range as check_time_range
    from streamforge_nb.workflow.ranges import last_closed_end as last_closed_end
    from streamforge_nb.workflow.runner import main as main
    from streamforge_nb.workflow.runner import run_job as run_job
    from streamforge_nb.workflow.shards import KLINES_PER_REQUEST as KLINES_PER_REQUEST
    from streamforge_nb.workflow.shards import KLINES_WEIGHT as KLINES_WEIGHT
    from streamforge_nb.workflow.shards import SHARD_CANDLES as SHARD_CANDLES
    from streamforge_nb.workflow.shards import WEIGHT_PER_MINUTE as WEIGHT_PER_MINUTE
    from streamforge_nb.workflow.shards import BatchPlan as BatchPlan
    from streamforge_nb.workflow.shards import Shard as Shard
    from streamforge_nb.workflow.shards import candle_count as candle_count
    from streamforge_nb.workflow.shards import shard_ranges as shard_ranges
    from streamforge_nb.workflow.steps import Plan as Plan
    from streamforge_nb.workflow.steps import Step as Step
    from streamforge_nb.workflow.targets import CONFIG_MAP as CONFIG_MAP
    from streamforge_nb.workflow.targets import OUTPUT_ENV as OUTPUT_ENV
    from streamforge_nb.workflow.targets import PARAMETERS_ENV as PARAMETERS_ENV
    from streamforge_nb.workflow.targets import SECRET as SECRET
    from streamforge_nb.workflow.targets import TARGETS as TARGETS
    from streamforge_nb.workflow.targets import JobTarget as JobTarget
    from streamforge_nb.workflow.targets import default_output as default_output
    from streamforge_nb.workflow.targets import job_parameters as job_parameters
    from streamforge_nb.workflow.targets import job_spec as job_spec
    from streamforge_nb.workflow.targets import notebook_path as notebook_path
    from streamforge_nb.workflow.targets import notebooks_dir as notebooks_dir
    from streamforge_nb.workflow.targets import register_target as register_target

_EXPORTS = {
    "BATCH_KIND": "streamforge_nb.workflow.batch",
    "Batch": "streamforge_nb.workflow.batch",
    "BatchPlan": "streamforge_nb.workflow.shards",
    "KLINES_PER_REQUEST": "streamforge_nb.workflow.shards",
    "KLINES_WEIGHT": "streamforge_nb.workflow.shards",
    "SHARD_CANDLES": "streamforge_nb.workflow.shards",
    "Shard": "streamforge_nb.workflow.shards",
    "WEIGHT_PER_MINUTE": "streamforge_nb.workflow.shards",
    "candle_count": "streamforge_nb.workflow.shards",
    "shard_ranges": "streamforge_nb.workflow.shards",
    "CONFIG_MAP": "streamforge_nb.workflow.targets",
    "DEFAULT_IMAGE": "streamforge_nb.workflow.plan",
    "EXCHANGE_START": "streamforge_nb.workflow.ranges",
    "JobStatus": "streamforge_nb.workflow.launchers",
    "JobTarget": "streamforge_nb.workflow.targets",
    "KubernetesLauncher": "streamforge_nb.workflow.kubernetes",
    "Launcher": "streamforge_nb.workflow.launchers",
    "LocalLauncher": "streamforge_nb.workflow.processes",
    "OUTPUT_ENV": "streamforge_nb.workflow.targets",
    "PARAMETERS_ENV": "streamforge_nb.workflow.targets",
    "Plan": "streamforge_nb.workflow.steps",
    "SECRET": "streamforge_nb.workflow.targets",
    "Step": "streamforge_nb.workflow.steps",
    "TARGETS": "streamforge_nb.workflow.targets",
    "Workflow": "streamforge_nb.workflow.plan",
    "check_time_range": "streamforge_nb.workflow.ranges",
    "last_closed_end": "streamforge_nb.workflow.ranges",
    "default_output": "streamforge_nb.workflow.targets",
    "get_launcher": "streamforge_nb.workflow.launchers",
    "job_parameters": "streamforge_nb.workflow.targets",
    "job_spec": "streamforge_nb.workflow.targets",
    "launch_paced": "streamforge_nb.workflow.pacing",
    "launcher_for": "streamforge_nb.workflow.launchers",
    "loader_running": "streamforge_nb.workflow.pacing",
    "main": "streamforge_nb.workflow.runner",
    "notebook_path": "streamforge_nb.workflow.targets",
    "notebooks_dir": "streamforge_nb.workflow.targets",
    "register_launcher": "streamforge_nb.workflow.launchers",
    "register_target": "streamforge_nb.workflow.targets",
    "run_job": "streamforge_nb.workflow.runner",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
