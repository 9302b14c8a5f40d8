"""dpm-backend --check-config, --version, --help, and the one-line errors of a bad start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import write_config

REPO = Path(__file__).resolve().parents[2]
FCP = f'{INVENTORY["fcp"][0]}:0'
OSA = '3e8f1b2c-5a6d-4c7e-8f90-1a2b3c4d5e01'  # an OSA adapter of the z13
UNKNOWN_CPC = '2b1e5a4c-6d3f-4e8a-9c71-0f2a3b4c5dff'


def backend(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', 'dpm_backend.server', *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def hosts() -> list[HostSpec]:
    return [
        HostSpec('good', INVENTORY['z13'], mappings=(FCP,)),
        HostSpec('z14', INVENTORY['z14'], mappings=(f'{INVENTORY["fcp_z14"][0]}:0',)),
        HostSpec('nocpc', UNKNOWN_CPC, mappings=(FCP,)),
        HostSpec(
            'classic', INVENTORY['classic'], max_processors=2, max_memory=1024, mappings=(FCP,)
        ),
        HostSpec('toobig', INVENTORY['z13'], max_processors=1000, mappings=(FCP,)),
        HostSpec('osa', INVENTORY['z13'], mappings=(f'{OSA}:0',)),
        HostSpec('noadapter', INVENTORY['z13'], mappings=(f'{INVENTORY["fcp_z14"][0]}:0',)),
    ]


def test_check_config_prints_one_line_per_host_and_fails_on_any_unusable_host(tmp_path, hmc_sim):
    config = write_config(tmp_path / 'b.conf', tmp_path / 'b.sock', hosts(), hmc=hmc_sim)
    result = backend('--check-config', str(config))
    lines = dict(line.split(': ', 1) for line in result.stdout.splitlines())
    assert result.returncode == 1, result.stdout + result.stderr
    assert list(lines) == [h.name for h in hosts()], result.stdout
    assert lines['good'].startswith('ok: CPC CPCZ13 (DPM, '), lines['good']
    assert 'storage path vhba' in lines['good']
    assert (
        lines['z14'].startswith('ok: CPC CPCZ14 ')
        and 'storage path storage-groups' in (lines['z14'])
    )
    assert lines['nocpc'] == f'NOT USABLE: CPC {UNKNOWN_CPC} does not exist on the HMC'
    assert lines['classic'].startswith('NOT USABLE: ') and 'not in DPM mode' in lines['classic']
    assert 'max_processors 1000 exceeds' in lines['toobig']
    assert 'is of type osd, not fcp' in lines['osa']
    assert 'no such adapter on CPC CPCZ13' in lines['noadapter']
    # Read-only: the checks make no request that changes the HMC, and log off.
    methods = {(r.method, r.uri.split('?')[0]) for r in hmc_sim.sim.requests()}
    changing = {m for m in methods if m[0] != 'GET' and m[1] != '/api/sessions'}
    assert changing == {('DELETE', '/api/sessions/this-session')}, methods
    assert result.stderr == ''


def test_check_config_passes_a_good_file_and_reports_unknown_options_and_groups(tmp_path, hmc_sim):
    good = hosts()[:2]
    config = write_config(tmp_path / 'b.conf', tmp_path / 'b.sock', good, hmc=hmc_sim)
    result = backend('--check-config', str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split(':')[0] for line in result.stdout.splitlines()] == ['good', 'z14']

    typos = write_config(
        tmp_path / 't.conf',
        tmp_path / 'b.sock',
        good,
        {
            'hmc': {'read_timout': '5'},
            'backend': {'read_timeout': '5'},
            'host:good': {'max_procesors': '4'},
            'host:forgotten': {'cpc_object_id': INVENTORY['z13']},
        },
        hmc=hmc_sim,
    )
    result = backend(f'--check-config={typos}')
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith('error: ')]
    assert errors == [
        f'error: {typos}: [hmc] read_timout: unknown option, not used (did you mean read_timeout?)',
        f'error: {typos}: [backend] read_timeout: unknown option, not used '
        '(did you mean read_timeout in [hmc]?)',
        f'error: {typos}: [host:good] max_procesors: unknown option, not used '
        '(did you mean max_processors?)',
        f"error: {typos}: [host:forgotten]: host 'forgotten' is not in [backend] hosts, "
        'so this group is not used',
    ]
    # The hosts are still checked: the file's findings and the HMC's, in one run.
    assert result.stdout.splitlines()[-2:] == [
        line for line in result.stdout.splitlines() if line.startswith(('good: ok', 'z14: ok'))
    ]


def test_a_started_backend_warns_about_unknown_options_and_logs_its_version(tmp_path, hmc_sim):
    config = write_config(
        tmp_path / 'b.conf',
        tmp_path / 'b.sock',
        hosts()[:1],
        {'hmc': {'read_timout': '5'}, 'host:forgotten': {'max_memory': '1024'}},
        hmc=hmc_sim,
    )
    log_file = tmp_path / 'backend.log'
    process = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'dpm_backend.server',
            '--config-file',
            str(config),
            '--log-file',
            str(log_file),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        from dpmtest import wait_for

        wait_for(
            lambda: 'passed its checks' in log_file.read_text() if log_file.exists() else False,
            timeout=30,
        )
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    log = log_file.read_text()
    # (the logger is __main__ under python -m)
    assert re.search(r' INFO \S+ \[-\] dpm-backend \S+ \(zhmcclient \S+\) starting for HMC ', log)
    assert re.search(r' WARNING \S+ \[-\] Configuration: ', log)
    assert '[hmc] read_timout: unknown option, not used (did you mean read_timeout?)' in log
    assert "[host:forgotten]: host 'forgotten' is not in [backend] hosts" in log
    assert 'Host good passed its checks: CPC CPCZ13' in log


def test_version_and_help_say_what_the_program_is():
    from dpm_backend import config

    version = backend('--version')
    assert version.returncode == 0
    assert version.stdout.strip() == config.version() != ''
    help_text = backend('--help')
    assert help_text.returncode == 0
    flat = ' '.join(help_text.stdout.split())
    assert 'serves the DPMHost gRPC service' in flat
    assert 'dpm-backend.conf.sample' in flat
    assert '--check-config FILE' in flat


def test_configuration_errors_are_one_line_naming_the_option_with_exit_2(tmp_path):
    cases = {
        'cpc_object_id': (
            {'host:cpc1': {'cpc_object_id': 'zz'}},
            '[host:cpc1] cpc_object_id: invalid value: ',
        ),
        'read_timeout': ({'hmc': {'read_timeout': 'abc'}}, '[hmc] read_timeout: invalid value: '),
        'range': ({'hmc': {'pool_size': '0'}}, '[hmc] pool_size: invalid value: '),
        'listen': ({'backend': {'listen': 'nowhere'}}, '[backend] listen: expected '),
    }
    for name, (extra, start) in cases.items():
        config = write_config(tmp_path / f'{name}.conf', tmp_path / 's.sock', extra=extra)
        result = backend('--config-file', str(config))
        assert result.returncode == 2, (name, result.stderr)
        assert result.stdout == ''
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith(f'dpm-backend: configuration error: {start}'), lines[0]
        assert 'LocationInfo' not in lines[0]


def test_a_listen_address_that_cannot_be_bound_is_a_one_line_error_with_exit_2(tmp_path, hmc_sim):
    missing_dir = tmp_path / 'no' / 'such' / 'dir' / 's.sock'
    config = write_config(tmp_path / 'b.conf', missing_dir, hosts()[:1], hmc=hmc_sim)
    result = backend('--config-file', str(config), '--log-file', str(tmp_path / 'log'))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f'dpm-backend: configuration error: [backend] listen: cannot serve on unix:{missing_dir}'
    ), lines[0]
    assert not os.path.exists(missing_dir)
