"""Workflows: the plan, targets and their Job specs, the in-Job runner, the launchers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.workflow.launchers import (
        JobStatus,
        KubernetesLauncher,
        Launcher,
        LocalLauncher,
        get_launcher,
        register_launcher,
    )
    from streamforge_nb.workflow.plan import (
        DEFAULT_IMAGE,
        Plan,
        Step,
        Workflow,
    )
    from streamforge_nb.workflow.runner import (
        main,
        run_job,
    )
    from streamforge_nb.workflow.targets import (
        CONFIG_MAP,
        OUTPUT_ENV,
        PARAMETERS_ENV,
        SECRET,
        TARGETS,
        JobTarget,
        default_output,
        job_parameters,
        job_spec,
        notebook_path,
        notebooks_dir,
        register_target,
    )

_EXPORTS = {
    "CONFIG_MAP": "streamforge_nb.workflow.targets",
    "DEFAULT_IMAGE": "streamforge_nb.workflow.plan",
    "JobStatus": "streamforge_nb.workflow.launchers",
    "JobTarget": "streamforge_nb.workflow.targets",
    "KubernetesLauncher": "streamforge_nb.workflow.launchers",
    "Launcher": "streamforge_nb.workflow.launchers",
    "LocalLauncher": "streamforge_nb.workflow.launchers",
    "OUTPUT_ENV": "streamforge_nb.workflow.targets",
    "PARAMETERS_ENV": "streamforge_nb.workflow.targets",
    "Plan": "streamforge_nb.workflow.plan",
    "SECRET": "streamforge_nb.workflow.targets",
    "Step": "streamforge_nb.workflow.plan",
    "TARGETS": "streamforge_nb.workflow.targets",
    "Workflow": "streamforge_nb.workflow.plan",
    "default_output": "streamforge_nb.workflow.targets",
    "get_launcher": "streamforge_nb.workflow.launchers",
    "job_parameters": "streamforge_nb.workflow.targets",
    "job_spec": "streamforge_nb.workflow.targets",
    "main": "streamforge_nb.workflow.runner",
    "notebook_path": "streamforge_nb.workflow.targets",
    "notebooks_dir": "streamforge_nb.workflow.targets",
    "register_launcher": "streamforge_nb.workflow.launchers",
    "register_target": "streamforge_nb.workflow.targets",
    "run_job": "streamforge_nb.workflow.runner",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "CONFIG_MAP",
    "DEFAULT_IMAGE",
    "OUTPUT_ENV",
    "PARAMETERS_ENV",
    "SECRET",
    "TARGETS",
    "JobStatus",
    "JobTarget",
    "KubernetesLauncher",
    "Launcher",
    "LocalLauncher",
    "Plan",
    "Step",
    "Workflow",
    "default_output",
    "get_launcher",
    "job_parameters",
    "job_spec",
    "main",
    "notebook_path",
    "notebooks_dir",
    "register_launcher",
    "register_target",
    "run_job",
]

