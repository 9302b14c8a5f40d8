"""The run_guest_tools helper, as the backend round-trip test will use it."""

import pytest


def test_run_guest_tools_reports_ports_and_macs(tmp_path, run_guest_tools):
    cmdline = 'root=/dev/dasda1 console=ttyS0 8001,0,0a1b2c3d4e5f; 800A,1,fa163e000001; 8004,0;'

    got = run_guest_tools(tmp_path, cmdline, ['8001', '800A', '8004'])

    assert got == {
        '8001': {'port': 0, 'mac': '0a:1b:2c:3d:4e:5f'},
        '800a': {'port': 1, 'mac': 'fa:16:3e:00:00:01'},
        '8004': {'port': 0, 'mac': None},
    }


def test_run_guest_tools_raises_on_failure_unless_told_not_to(tmp_path, run_guest_tools):
    with pytest.raises(AssertionError, match='malformed token'):
        run_guest_tools(tmp_path / 'a', '8001,0; 8004,9;', ['8001', '8004'])

    got = run_guest_tools(
        tmp_path / 'b', '8001,0,010000000000; 8004,9;', ['8001', '8004'], check=False
    )

    assert got == {'8001': {'port': 0, 'mac': None}}
