"""Widgets and pages: the queue, batch and launch panels, the Voila dashboards."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.ui.actions import PanelActions as PanelActions
    from streamforge_nb.ui.batch_panel import BatchPanel as BatchPanel
    from streamforge_nb.ui.dashboard import PAGES as PAGES
    from streamforge_nb.ui.dashboard import Dashboard as Dashboard
    from streamforge_nb.ui.dashboard import DashboardError as DashboardError
    from streamforge_nb.ui.dashboard import default_notebooks_dir as default_notebooks_dir
    from streamforge_nb.ui.dashboard import start_dashboard as start_dashboard
    from streamforge_nb.ui.launch_panel import LaunchPanel as LaunchPanel
    from streamforge_nb.ui.launch_panel import chart_bundle as chart_bundle
    from streamforge_nb.ui.page_parameters import declared_parameters as declared_parameters
    from streamforge_nb.ui.page_parameters import parameterize as parameterize
    from streamforge_nb.ui.page_parameters import prelaunch_hook as prelaunch_hook
    from streamforge_nb.ui.panel import QueuePanel as QueuePanel

_EXPORTS = {
    "BatchPanel": "streamforge_nb.ui.batch_panel",
    "Dashboard": "streamforge_nb.ui.dashboard",
    "DashboardError": "streamforge_nb.ui.dashboard",
    "LaunchPanel": "streamforge_nb.ui.launch_panel",
    "PanelActions": "streamforge_nb.ui.actions",
    "PAGES": "streamforge_nb.ui.dashboard",
    "QueuePanel": "streamforge_nb.ui.panel",
    "chart_bundle": "streamforge_nb.ui.launch_panel",
    "declared_parameters": "streamforge_nb.ui.page_parameters",
    "default_notebooks_dir": "streamforge_nb.ui.dashboard",
    "parameterize": "streamforge_nb.ui.page_parameters",
    "prelaunch_hook": "streamforge_nb.ui.page_parameters",
    "start_dashboard": "streamforge_nb.ui.dashboard",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
