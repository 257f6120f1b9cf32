"""The broker-free tests that handle dates and times pass on machines whose clock is not UTC.

A naive datetime read as local time passes every test on a UTC machine (CI's, most
containers') and shifts a user's ranges by hours on theirs. These run those tests again in a
fresh interpreter under other zones: one east of UTC with summer time, one west of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Fast files that parse, bin or print times and need no broker: about 10 s in all east of
# UTC, the files that parse and bin the most west of it (the whole set twice is too slow).
TIME_FILES = ["test_names.py", "test_analysis.py", "test_real_klines.py"]
MORE_FILES = ["test_archives.py", "test_contract.py", "test_exchange_server.py"]
ZONES = {"Europe/Berlin": [*TIME_FILES, *MORE_FILES], "America/New_York": TIME_FILES}
NEEDS_BROKER = "test_real_rows_load_exactly_through_the_loader_and_the_sink"


def test_the_zones_really_are_not_utc() -> None:
    """Each zone is known to this machine's tz database (else TZ would silently mean UTC)."""
    for zone in ZONES:
        probe = subprocess.run(
            [sys.executable, "-c", "import time; print(time.timezone, time.tzname[0])"],
            env={**os.environ, "TZ": zone},
            capture_output=True,
            text=True,
            check=True,
        )
        offset, name = probe.stdout.split()
        assert int(offset) != 0 and name != "UTC", (zone, probe.stdout)


def test_date_and_time_tests_pass_under_other_time_zones() -> None:
    """Both zones run at once: the two runs share nothing but the CPU."""
    runs = {}
    for zone, files in ZONES.items():
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-k", f"not {NEEDS_BROKER}", *(str(TESTS / f) for f in files)]  # fmt: skip
        runs[zone] = subprocess.Popen(
            command,
            env={**os.environ, "TZ": zone},
            cwd=TESTS.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    failed = []
    for zone, run in runs.items():
        out, _ = run.communicate(timeout=240)
        if run.returncode != 0:
            failed.append(f"--- TZ={zone} (exit {run.returncode}):\n{out[-6000:]}")
    assert not failed, "\n".join(failed)
