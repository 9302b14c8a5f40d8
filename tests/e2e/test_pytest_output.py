"""A quiet test run prints pytest's progress and summary and nothing else.

Backends, simulators and their subprocesses log from threads and children;
none of it may reach the terminal between the progress dots (pytest shows
captured output with a failing test instead).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# In-process backends whose start-up checks log warnings from their threads, and
# dpm-hmc-sim processes and a refused command line with output of their own.
QUIET_FILES = ('tests/e2e/test_host_checks.py', 'tests/sim/test_serving.py')
PROGRESS = re.compile(r'[.sxXfFE]+ *\[ *\d+%\]')
SUMMARY = re.compile(r'\d+ passed(?:, \d+ \w+)* in [\d.]+s(?: \([\d:]+\))?')


def _quiet_run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--color=no', *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stray_lines(run: subprocess.CompletedProcess) -> list[str]:
    """What a passing ``pytest -q`` printed besides progress lines and the final summary."""
    lines = run.stdout.splitlines()
    stray = [line for line in lines[:-1] if not PROGRESS.fullmatch(line)]
    if not lines or not SUMMARY.fullmatch(lines[-1]):
        stray += lines[-1:] or ['(no summary line)']
    return stray + run.stderr.splitlines()


def test_a_quiet_run_prints_only_progress_and_the_summary():
    run = _quiet_run(*QUIET_FILES, cwd=REPO)

    assert run.returncode == 0, run.stdout + run.stderr
    assert stray_lines(run) == [], run.stdout + run.stderr


def test_the_check_sees_a_line_written_outside_the_tests(tmp_path):
    (tmp_path / 'pytest.ini').write_text('[pytest]\n')
    (tmp_path / 'test_leaky.py').write_text(
        textwrap.dedent(
            """
            import atexit
            import os


            def test_leaves_a_writer_behind():
                atexit.register(os.write, 2, b'WARNING some.logger [-] after the run\\n')
            """
        )
    )

    run = _quiet_run('-c', str(tmp_path / 'pytest.ini'), 'test_leaky.py', cwd=tmp_path)

    assert run.returncode == 0, run.stdout + run.stderr
    assert stray_lines(run) == ['WARNING some.logger [-] after the run']
