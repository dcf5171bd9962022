"""The session report: figures, summary.json and report.html, rebuilt from a session folder."""

from controller.report.build import build_report

__all__ = ["build_report"]
