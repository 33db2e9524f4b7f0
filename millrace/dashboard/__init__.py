"""The dashboard: see what waits, runs and fails, and act on it (millrace.dashboard.app)."""

from millrace.dashboard.app import dashboard_app
from millrace.dashboard.config import DEFAULT_REDACTED, DashboardConfig, Login

__all__ = ["DEFAULT_REDACTED", "DashboardConfig", "Login", "dashboard_app"]
