"""The test suite's own hygiene: two runs on one machine never share a temporary root.

A run that shared ``/tmp/pytest-of-<user>`` with another had its directories pruned by
it (the restart tests' private PostgreSQL lost its data directory mid-run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

CHILD_TEST = """
import os, pathlib, time

def test_meanwhile(tmp_path):
    here = pathlib.Path(os.environ["CHILD_REPORTS"])
    name = os.environ["CHILD_NAME"]
    (here / name).write_text(str(tmp_path))
    other = here / os.environ["CHILD_WAITS_FOR"]
    deadline = time.monotonic() + 60  # a hang guard, not a speed check
    while not other.exists():
        assert time.monotonic() < deadline, "the other run never started"
        time.sleep(0.01)
    assert tmp_path.exists()
"""


def test_two_runs_at_once_each_get_a_temporary_root_of_their_own(tmp_path: Path) -> None:
    (tmp_path / "test_child.py").write_text(CHILD_TEST)
    reports = tmp_path / "reports"
    reports.mkdir()
    shared_root = tmp_path / "temproot"  # where pytest's shared pytest-of-<user> would be
    shared_root.mkdir()

    def start(name: str, waits_for: str) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT),
            "PYTEST_DEBUG_TEMPROOT": str(shared_root),
            "TMPDIR": str(shared_root),
            "CHILD_REPORTS": str(reports),
            "CHILD_NAME": name,
            "CHILD_WAITS_FOR": waits_for,
        }
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["-p", "tests.conftest", "--rootdir", str(tmp_path), "test_child.py"]
        return subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    runs = [start("a", "b"), start("b", "a")]  # each waits until the other is running
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs

    roots = {Path((reports / name).read_text()).parent for name in ("a", "b")}
    assert len(roots) == 2
    for root in roots:
        assert not str(root).startswith(str(shared_root / "pytest-of-")), root
        assert not root.exists()  # each run removed its own root when it ended
