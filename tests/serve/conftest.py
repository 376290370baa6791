"""The real Triton server's log goes into the report of a test that failed while using it."""

from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("server")
    if report.failed and hasattr(server, "log_text"):
        lines = server.log_text().splitlines()[-200:]
        report.sections.append((f"tritonserver log (last {len(lines)} lines)", "\n".join(lines)))
