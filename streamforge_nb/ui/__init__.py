"""Widgets and pages: the queue panel, the launch panel, the Voila dashboards."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.ui.dashboard import (
        PAGES,
        Dashboard,
        DashboardError,
        default_notebooks_dir,
        start_dashboard,
    )
    from streamforge_nb.ui.launch_panel import (
        LaunchPanel,
        chart_bundle,
    )
    from streamforge_nb.ui.page_parameters import (
        declared_parameters,
        parameterize,
        prelaunch_hook,
    )
    from streamforge_nb.ui.panel import (
        QueuePanel,
    )

_EXPORTS = {
    "Dashboard": "streamforge_nb.ui.dashboard",
    "DashboardError": "streamforge_nb.ui.dashboard",
    "LaunchPanel": "streamforge_nb.ui.launch_panel",
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

__all__ = [
    "PAGES",
    "Dashboard",
    "DashboardError",
    "LaunchPanel",
    "QueuePanel",
    "chart_bundle",
    "declared_parameters",
    "default_notebooks_dir",
    "parameterize",
    "prelaunch_hook",
    "start_dashboard",
]

