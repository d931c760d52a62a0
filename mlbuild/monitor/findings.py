"""A monitoring check that found drift or a degraded metric leaves a shared finding (a git
note on the checked version's commit), which audit and the time-to-respond KPI read."""

from __future__ import annotations

from pathlib import Path

from mlbuild.gitrepo import head_revision
from mlbuild.history import notes
from mlbuild.monitor.report import MonitorReport


def _commit(root: Path, report: MonitorReport) -> str | None:
    if report.model and report.version:
        from mlbuild.registry.state import Registry

        found = Registry.read(root).versions(report.model).get(report.version)
        if found is not None:
            return found.commit
    return head_revision(root)


def share(root: Path, report: MonitorReport) -> bool:
    """Record a finding when the check found one (True: recorded)."""
    if not (report.drifted or report.degraded) or report.model is None:
        return False
    commit = _commit(root, report)
    return commit is not None and notes.add(root, commit, "drift", {
        "model": report.model, "version": report.version, "source": "monitor",
        "drifted_columns": report.drifted_columns(), "degraded": report.degraded})
