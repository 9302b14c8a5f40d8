"""The backend's config file: valid files load, every bad value names its option."""

from __future__ import annotations

import pytest
from dpmtest import INVENTORY
from dpmtest import PASSWORD
from dpmtest import HostSpec
from dpmtest import default_hosts
from dpmtest import load_config
from dpmtest import write_config

from dpm_backend import config as config_mod

FCP = INVENTORY['fcp'][0]


def test_valid_file_loads_every_host_with_normalised_values(tmp_path):
    host = HostSpec(
        'cpc1',
        INVENTORY['z13'],
        mappings=(f'{FCP.upper()}:1', f'{INVENTORY["fcp"][1]}:0'),
        ignore=('0xC05076FFE5000001', 'c05076ffe5000002'),
    )
    config = load_config(write_config(tmp_path / 'c.conf', tmp_path / 's.sock', [host]))
    loaded = config.hosts['cpc1']
    assert loaded.adapter_ports == ((FCP, 1), (INVENTORY['fcp'][1], 0))
    assert loaded.target_wwpn_ignore_list == {'c05076ffe5000001', 'c05076ffe5000002'}
    assert (loaded.max_processors, loaded.max_memory) == (8, 16384)
    assert config.listen.unix_path == str(tmp_path / 's.sock')
    assert config.listen.socket_mode == 0o660
    assert config.hmc.verify_cert is True
    # Explicit timeouts, far below zhmcclient's one-hour defaults.
    assert config.hmc.read_timeout <= 300 and config.hmc.operation_timeout <= 900


def test_password_is_kept_out_of_repr(tmp_path):
    config = load_config(write_config(tmp_path / 'c.conf', tmp_path / 's.sock'))
    assert config.hmc.password == PASSWORD
    assert PASSWORD not in repr(config) and PASSWORD not in repr(config.hmc)


def test_password_file_is_read(tmp_path):
    secret = tmp_path / 'pw'
    secret.write_text('from-a-credential\n')
    path = write_config(
        tmp_path / 'c.conf',
        tmp_path / 's.sock',
        extra={'hmc': {'password': '', 'password_file': str(secret)}},
    )
    assert load_config(path).hmc.password == 'from-a-credential'


def bad_host(**changes) -> list[HostSpec]:
    hosts = default_hosts()[:1]
    for key, value in changes.items():
        setattr(hosts[0], key, value)
    return hosts


BAD = {
    'cpc id not an object id': (bad_host(cpc='CPC1'), None, '[host:cpc1] cpc_object_id'),
    'cpc id upper case': (
        bad_host(cpc=INVENTORY['z13'].upper()),
        None,
        '[host:cpc1] cpc_object_id',
    ),
    'memory below 512': (bad_host(max_memory=511), None, '[host:cpc1] max_memory'),
    'zero processors': (bad_host(max_processors=0), None, '[host:cpc1] max_processors'),
    'port 4': (
        bad_host(mappings=(f'{FCP}:4',)),
        None,
        '[host:cpc1] physical_storage_adapter_mappings',
    ),
    'no port': (bad_host(mappings=(FCP,)), None, '[host:cpc1] physical_storage_adapter_mappings'),
    'adapter not an id': (
        bad_host(mappings=('fcp-a:0',)),
        None,
        '[host:cpc1] physical_storage_adapter_mappings',
    ),
    'no mappings': (bad_host(mappings=()), None, '[host:cpc1] physical_storage_adapter_mappings'),
    'bad ignore wwpn': (bad_host(ignore=('12345',)), None, '[host:cpc1] target_wwpn_ignore_list'),
    'host name too long': (bad_host(name='h' * 18), None, '[backend] hosts'),
    'host name metachar': (bad_host(name='cpc.*'), None, '[backend] hosts'),
    'no userid': (None, {'hmc': {'userid': ''}}, '[hmc] userid'),
    'no password': (None, {'hmc': {'password': ''}}, '[hmc] password'),
    'unreadable password file': (
        None,
        {'hmc': {'password': '', 'password_file': '/nonexistent/pw'}},
        '[hmc] password_file',
    ),
    'no hmc': (None, {'hmc': {'hosts': ''}}, '[hmc] hosts'),
    'port out of range': (None, {'hmc': {'port': '70000'}}, '[hmc] port'),
    'job poll too fast': (None, {'hmc': {'job_poll_interval': '0'}}, '[hmc] job_poll_interval'),
    'timeout 0': (None, {'hmc': {'read_timeout': '0'}}, 'read_timeout'),
    'pool 0': (None, {'hmc': {'pool_size': '0'}}, 'pool_size'),
    'missing ca file': (None, {'hmc': {'ca_file': '/nonexistent.pem'}}, '[hmc] ca_file'),
    'relative socket': (None, {'backend': {'listen': 'unix:relative.sock'}}, '[backend] listen'),
    'tcp without tls': (None, {'backend': {'listen': '192.0.2.1:50051'}}, '[backend] listen'),
    'tls incomplete': (
        None,
        {'backend': {'listen': '127.0.0.1:50051', 'tls_cert_file': '/etc/hostname'}},
        'tls_key_file',
    ),
    'bad socket mode': (None, {'backend': {'socket_mode': '999'}}, 'socket_mode'),
    'no hosts': (None, {'backend': {'hosts': ''}}, '[backend] hosts'),
}
BAD_METRICS_LISTEN = {
    'no port': '127.0.0.1',
    'port out of range': '127.0.0.1:65536',
    'ipv6 without brackets': '::1:9464',
    'bad ipv4': '127.0.0.256:9464',
    'bad ipv6': '[::g]:9464',
    'url': 'http://127.0.0.1:9464/metrics',
    'unix socket': 'unix:/run/dpm-backend/metrics.sock',
    'no host': ':9464',
}
BAD.update(
    {
        f'metrics_listen {name}': (
            None,
            {'backend': {'metrics_listen': value}},
            '[backend] metrics_listen',
        )
        for name, value in BAD_METRICS_LISTEN.items()
    }
)


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_value_fails_at_load_naming_the_option(tmp_path, case):
    hosts, extra, option = BAD[case]
    path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', hosts, extra)
    with pytest.raises(config_mod.ConfigError) as caught:
        load_config(path)
    assert option in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ('value', 'expected'),
    [
        ('127.0.0.1:9464', ('127.0.0.1', 9464)),
        ('[::]:9464', ('::', 9464)),
        ('[::1]:0', ('::1', 0)),
        ('localhost:9464', ('localhost', 9464)),
        ('', None),
    ],
)
def test_metrics_listen_is_host_and_port_or_off(tmp_path, value, expected):
    extra = {'backend': {'metrics_listen': value}} if value else None
    path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', extra=extra)
    assert load_config(path).metrics_listen == expected


def test_a_bad_metrics_listen_is_one_line_naming_the_option(tmp_path):
    path = write_config(
        tmp_path / 'c.conf', tmp_path / 's.sock', extra={'backend': {'metrics_listen': 'x:y'}}
    )
    with pytest.raises(config_mod.ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        '[backend] metrics_listen: expected "<host>:<port>" (e.g. 127.0.0.1:9464 or '
        "[::]:9464), got 'x:y'"
    )


def test_host_names_must_differ_beyond_case(tmp_path):
    hosts = [*default_hosts()[:1], HostSpec('CPC1', INVENTORY['z13'], mappings=(f'{FCP}:0',))]
    with pytest.raises(config_mod.ConfigError, match='unique'):
        load_config(write_config(tmp_path / 'c.conf', tmp_path / 's.sock', hosts))


def test_plaintext_loopback_tcp_needs_the_explicit_flag(tmp_path):
    listen = {'listen': '127.0.0.1:0'}
    path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', extra={'backend': listen})
    with pytest.raises(config_mod.ConfigError, match='allow_insecure_loopback'):
        load_config(path)
    flagged = {**listen, 'allow_insecure_loopback': 'true'}
    path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', extra={'backend': flagged})
    assert load_config(path).listen.unix_path is None


@pytest.mark.parametrize('address', ['192.0.2.1:50051', '0.0.0.0:50051', '[::]:50051'])
def test_the_loopback_flag_never_allows_plaintext_elsewhere(tmp_path, address):
    extra = {'backend': {'listen': address, 'allow_insecure_loopback': 'true'}}
    path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', extra=extra)
    with pytest.raises(config_mod.ConfigError, match='mutual TLS'):
        load_config(path)


TOKEN = 't0ken-for-cpc1-0123456789abcdef'


def test_host_tokens_load_from_file_option_or_credential(tmp_path, monkeypatch):
    token_file = tmp_path / 'cpc1.token'
    token_file.write_text(TOKEN + '\n')
    credentials = tmp_path / 'creds'
    credentials.mkdir()
    (credentials / 'token-cpc10').write_text('from-systemd-credential-0123\n')
    monkeypatch.setenv('CREDENTIALS_DIRECTORY', str(credentials))
    path = write_config(
        tmp_path / 'c.conf',
        tmp_path / 's.sock',
        extra={
            'host:cpc1': {'token_file': str(token_file)},
            'host:z14host': {'token': 'inline-token-0123456789'},
            'backend': {'require_tokens': 'false'},
        },
    )
    config = load_config(path)
    assert config.tokens == {
        'cpc1': TOKEN,
        'cpc10': 'from-systemd-credential-0123',
        'z14host': 'inline-token-0123456789',
    }
    assert TOKEN not in repr(config) and 'inline-token' not in repr(config)


BAD_TOKENS = {
    'short': ({'host:cpc1': {'token': 'short'}}, '[host:cpc1] token'),
    'space': ({'host:cpc1': {'token': 'has a space in it 0123456'}}, '[host:cpc1] token'),
    'unicode': ({'host:cpc1': {'token': 'tökentökentökentöken'}}, '[host:cpc1] token'),
    'missing file': ({'host:cpc1': {'token_file': '/nonexistent/t'}}, '[host:cpc1] token_file'),
    'required': (
        {'backend': {'require_tokens': 'true'}, 'host:cpc1': {'token': TOKEN}},
        '[backend] require_tokens',
    ),
}


@pytest.mark.parametrize('case', sorted(BAD_TOKENS))
def test_bad_token_settings_fail_at_load_without_echoing_the_token(tmp_path, case):
    extra, option = BAD_TOKENS[case]
    path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', extra=extra)
    with pytest.raises(config_mod.ConfigError) as caught:
        load_config(path)
    assert option in str(caught.value)
    token = extra.get('host:cpc1', {}).get('token')
    if token and case != 'required':
        assert token not in str(caught.value)


def test_backend_exits_2_with_the_option_named(tmp_path, capsys):
    from dpm_backend import server

    path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', bad_host(max_memory=100))
    assert server.main(['--config-file', str(path)]) == 2
    assert '[host:cpc1] max_memory' in capsys.readouterr().err


def test_sample_config_lists_every_option():
    import pathlib

    sample = (pathlib.Path(__file__).parents[2] / 'deploy' / 'dpm-backend.conf.sample').read_text()
    for group, opts in config_mod.list_opts():
        name = group if isinstance(group, str) else group.name
        assert f'[{name}]' in sample
        for opt in opts:
            assert f'#{opt.dest} =' in sample, opt.dest


def test_password_comes_from_the_systemd_credential(tmp_path, monkeypatch):
    credentials = tmp_path / 'creds'
    credentials.mkdir()
    (credentials / 'hmc-password').write_text('from-systemd\n')
    monkeypatch.setenv('CREDENTIALS_DIRECTORY', str(credentials))
    path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', extra={'hmc': {'password': ''}})
    assert load_config(path).hmc.password == 'from-systemd'


def test_real_hmc_sessions_get_the_configured_timeouts_and_tls(tmp_path):
    from dpm_backend.hmc import SessionPool

    ca = tmp_path / 'ca.pem'
    ca.write_text('not read until a connection is made\n')
    path = write_config(
        tmp_path / 'c.conf',
        tmp_path / 's.sock',
        extra={
            'hmc': {
                'hosts': 'hmc1.example.invalid,hmc2.example.invalid',
                'port': '16794',
                'ca_file': str(ca),
                'read_timeout': '33',
                'connect_timeout': '7',
                'operation_timeout': '600',
                'status_timeout': '44',
            }
        },
    )
    config = load_config(path)
    session = SessionPool(config.hmc)._new_session()  # no request is made here
    rtc = session.retry_timeout_config
    assert (rtc.read_timeout, rtc.connect_timeout) == (33, 7)
    assert (rtc.operation_timeout, rtc.status_timeout) == (600, 44)
    assert session.verify_cert == str(ca)
    assert session.host == ['hmc1.example.invalid', 'hmc2.example.invalid']
    assert session.port == 16794
    assert PASSWORD not in repr(session)


@pytest.mark.parametrize('name', ['dpm-backend-example.conf', 'dpm-backend-sim.conf'])
def test_shipped_example_configs_load(name, tmp_path, monkeypatch):
    import pathlib

    credentials = tmp_path / 'creds'
    credentials.mkdir()
    (credentials / 'hmc-password').write_text('pw\n')
    monkeypatch.setenv('CREDENTIALS_DIRECTORY', str(credentials))
    text = (pathlib.Path(__file__).parents[2] / 'deploy' / name).read_text()
    # The example points at files of a real installation; the test provides them.
    ca = tmp_path / 'ca.pem'
    ca.write_text('x')
    path = tmp_path / name
    password = tmp_path / 'password'
    password.write_text('pw')
    text = text.replace('/etc/dpm-backend/hmc-ca.pem', str(ca))
    text = text.replace('/tmp/hmc-sim/hmc-sim-ca.pem', str(ca))
    path.write_text(text.replace('/tmp/hmc-sim/password', str(password)))
    config = load_config(path)
    assert len(config.hosts) == 2


def without_listen(path):
    path.write_text(''.join(line for line in path.open() if not line.startswith('listen =')))
    return path


def test_socket_defaults_to_the_systemd_runtime_directory_of_the_instance(tmp_path, monkeypatch):
    path = without_listen(write_config(tmp_path / 'c.conf', tmp_path / 's.sock'))
    monkeypatch.setenv('RUNTIME_DIRECTORY', '/run/dpm-backend/hmc2')
    listen = load_config(path).listen
    assert listen.unix_path == '/run/dpm-backend/hmc2/dpm-backend.sock'
    assert listen.address == 'unix:/run/dpm-backend/hmc2/dpm-backend.sock'
    # Several RuntimeDirectory= entries: systemd joins them with ':'.
    monkeypatch.setenv('RUNTIME_DIRECTORY', '/run/dpm-backend/hmc3:/run/other')
    assert load_config(path).listen.unix_path == '/run/dpm-backend/hmc3/dpm-backend.sock'


def test_socket_default_outside_systemd_and_an_explicit_listen_wins(tmp_path, monkeypatch):
    monkeypatch.delenv('RUNTIME_DIRECTORY', raising=False)
    path = without_listen(write_config(tmp_path / 'c.conf', tmp_path / 's.sock'))
    assert load_config(path).listen.unix_path == '/run/dpm-backend/dpm-backend.sock'
    monkeypatch.setenv('RUNTIME_DIRECTORY', '/run/dpm-backend/hmc2')
    explicit = write_config(tmp_path / 'e.conf', tmp_path / 's.sock')
    assert load_config(explicit).listen.unix_path == str(tmp_path / 's.sock')
