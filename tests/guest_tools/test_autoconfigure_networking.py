"""autoconfigure_networking.sh end to end on a fake root with shim commands."""

import pytest

GROUP_8001 = ['kernel', 'group', '0.0.8001,0.0.8002,0.0.8003']


def test_every_token_is_configured_in_layer2_on_its_port(fake_root_factory):
    fake = fake_root_factory(
        'BOOT_IMAGE=/boot/vmlinuz root=/dev/dasda1 console=ttyS0 '
        '8001,0,0a1b2c3d4e5f; 8004,1,fa163e000001; 8008,0; quiet',
        ['8001', '8004', '8008'],
    )

    result = fake.autoconfigure()

    assert result.returncode == 0, result.stderr
    assert fake.calls('kernel') == [
        GROUP_8001,
        ['kernel', 'group', '0.0.8004,0.0.8005,0.0.8006'],
        ['kernel', 'group', '0.0.8008,0.0.8009,0.0.800a'],
    ]
    for busid, port in [('0.0.8001', '0'), ('0.0.8004', '1'), ('0.0.8008', '0')]:
        assert fake.qeth_device(busid) == {'layer2': '1', 'portno': port, 'online': '1'}
    assert fake.calls('modprobe') == []


def test_seed_format_with_adjacent_tokens_is_accepted(fake_root_factory):
    fake = fake_root_factory('root=/dev/dasda1 0001,1,0a0000000011;0004,0;', ['0001', '0004'])

    result = fake.autoconfigure()

    assert result.returncode == 0, result.stderr
    assert fake.qeth_device('0.0.0001') == {'layer2': '1', 'portno': '1', 'online': '1'}
    assert fake.qeth_device('0.0.0004') == {'layer2': '1', 'portno': '0', 'online': '1'}


@pytest.mark.parametrize('token_devno', ['800A', '800a'])
def test_devno_is_matched_case_insensitively(fake_root_factory, token_devno):
    fake = fake_root_factory(f'{token_devno},1,0a0000000011;', ['800a'])

    result = fake.autoconfigure()

    assert result.returncode == 0, result.stderr
    assert fake.calls('kernel') == [['kernel', 'group', '0.0.800a,0.0.800b,0.0.800c']]
    assert fake.qeth_device('0.0.800a') == {'layer2': '1', 'portno': '1', 'online': '1'}


def test_existing_device_is_skipped_and_the_others_configured(fake_root_factory):
    fake = fake_root_factory('8001,0,0a0000000011; 8004,1;', ['8001', '8004'])
    fake.add_qeth_device('0.0.8001', layer2='0', portno='0', online='1')

    result = fake.autoconfigure()

    assert result.returncode == 0, result.stderr
    assert fake.qeth_device('0.0.8001') == {'layer2': '0', 'portno': '0', 'online': '1'}
    assert fake.calls('kernel') == [['kernel', 'group', '0.0.8004,0.0.8005,0.0.8006']]
    assert any('0.0.8001 already exists' in ' '.join(c) for c in fake.calls('logger'))


def test_missing_qeth_driver_is_loaded_with_modprobe(fake_root_factory):
    fake = fake_root_factory('8001,0;', ['8001'], qeth_loaded=False)

    result = fake.autoconfigure()

    assert result.returncode == 0, result.stderr
    assert fake.calls('modprobe') == [['modprobe', 'qeth']]
    assert fake.qeth_device('0.0.8001') == {'layer2': '1', 'portno': '0', 'online': '1'}


@pytest.mark.parametrize(
    'modprobe_env',
    [{'DPM_TEST_MODPROBE_RC': '1'}, {'DPM_TEST_MODPROBE_LOADS': '0'}],
    ids=['modprobe-fails', 'group-attribute-stays-missing'],
)
def test_qeth_driver_that_cannot_be_loaded_fails(fake_root_factory, modprobe_env):
    fake = fake_root_factory('8001,0;', ['8001'], qeth_loaded=False)

    result = fake.autoconfigure(**modprobe_env)

    assert result.returncode == 1
    assert fake.calls('kernel') == []
    assert 'modprobe qeth' in result.stderr


def test_no_tokens_does_nothing_and_succeeds(fake_root_factory):
    fake = fake_root_factory('root=/dev/dasda1 console=ttyS0 quiet', ['8001'], qeth_loaded=False)

    result = fake.autoconfigure()

    assert result.returncode == 0, result.stderr
    assert fake.calls('modprobe') == []
    assert fake.calls('kernel') == []


@pytest.mark.parametrize(
    'parameter',
    [
        'foo=8001,0,0a0000000011;',
        'foo=x;8001,0,0a0000000011;',
        'rd.znet=qeth,0.0.8001,0.0.8002,0.0.8003,layer2=1,portno=0',
        'console=8001,0',
    ],
)
def test_token_inside_another_parameter_is_not_matched(fake_root_factory, parameter):
    fake = fake_root_factory(f'root=/dev/dasda1 {parameter} quiet', ['8001'])

    result = fake.autoconfigure()

    assert result.returncode == 0, result.stderr
    assert fake.calls('kernel') == []
    assert fake.qeth_device('0.0.8001') is None


def test_token_glued_to_a_non_token_is_reported_not_matched(fake_root_factory):
    fake = fake_root_factory('x8001,0,0a0000000011; 8004,0;', ['8001', '8004'])

    result = fake.autoconfigure()

    assert result.returncode == 1
    assert fake.qeth_device('0.0.8001') is None
    assert fake.qeth_device('0.0.8004') == {'layer2': '1', 'portno': '0', 'online': '1'}


@pytest.mark.parametrize(
    'bad',
    [
        '80011,0,0a0000000011;',  # devno too long
        '801,0;',  # devno too short
        '80g1,0;',  # devno not hex
        '8002,4;',  # port out of range
        '8002,01;',  # port two digits
        '8002,-1;',
        '8002,0,0a00000000111;',  # mac too long
        '8002,0,0a000000001;',  # mac too short
        '8002,0,0a:00:00:00:00:11;',  # mac with colons
        '8002,0,0a000000001z;',  # mac not hex
        '8002,0,0a0000000011,9;',  # extra field
        '8002;',
        '8002,0',  # missing ';'
        ';',  # empty token
        ';;',
        '8002,,0;',
        '8002,0,.*;',  # regex metacharacters
        '.*,.*;',
        '[0-9]{4},[0-3];',
        '8002|8001,0;',
        '^8001,0$;',
        '8002,0,' + 'a' * 5000 + ';',  # overlong
        '8' * 5000 + ',0;',
    ],
)
def test_malformed_token_is_reported_and_skipped_without_stopping_others(fake_root_factory, bad):
    fake = fake_root_factory(
        f'root=/dev/dasda1 8001,0,0a0000000011; {bad} 8004,1;', ['8001', '8004']
    )

    result = fake.autoconfigure()

    assert result.returncode == 1
    assert 'malformed token' in result.stderr
    assert any(
        c[1:5] == ['-t', 'autoconfigure_networking', '-p', 'user.err'] for c in fake.calls('logger')
    )
    assert fake.qeth_device('0.0.8001') == {'layer2': '1', 'portno': '0', 'online': '1'}
    assert fake.qeth_device('0.0.8004') == {'layer2': '1', 'portno': '1', 'online': '1'}
    assert fake.qeth_device('0.0.8002') is None
    assert all(len(line) < 300 for line in result.stderr.splitlines())  # quoted input is shortened


def test_duplicate_devno_is_reported_and_the_first_token_wins(fake_root_factory):
    fake = fake_root_factory('8001,1,0a0000000011; 8001,0,0a0000000022;', ['8001'])

    result = fake.autoconfigure()

    assert result.returncode == 1
    assert 'duplicate token for devno 8001' in result.stderr
    assert fake.qeth_device('0.0.8001') == {'layer2': '1', 'portno': '1', 'online': '1'}


def test_missing_ccw_device_fails_but_the_others_are_configured(fake_root_factory):
    fake = fake_root_factory('8001,0; 9001,0; 8004,1;', ['8001', '8004'])
    fake.add_ccw_devices('9001', count=2)  # 0.0.9003 missing

    result = fake.autoconfigure()

    assert result.returncode == 1
    assert 'ccw device 0.0.9003 not found' in result.stderr
    assert fake.qeth_device('0.0.9001') is None
    assert [c[2] for c in fake.calls('kernel')] == [
        '0.0.8001,0.0.8002,0.0.8003',
        '0.0.8004,0.0.8005,0.0.8006',
    ]


def test_devno_at_the_top_of_the_range_fails(fake_root_factory):
    fake = fake_root_factory('fffe,0;', [])
    fake.add_ccw_devices('fffe', count=2)

    result = fake.autoconfigure()

    assert result.returncode == 1
    assert 'beyond ffff' in result.stderr
    assert fake.calls('kernel') == []


def test_device_that_never_appears_after_grouping_fails(fake_root_factory):
    fake = fake_root_factory('8001,0;', ['8001'])

    result = fake.autoconfigure(DPM_TEST_KERNEL_GROUPS='0', DPM_SETTLE_TIMEOUT='1')

    assert result.returncode == 1
    assert '0.0.8001 did not appear' in result.stderr
    assert ['udevadm', 'settle', '--timeout=1'] in fake.calls('udevadm')


def test_unreadable_cmdline_fails(fake_root_factory):
    fake = fake_root_factory('8001,0;', ['8001'])
    (fake.root / 'proc' / 'cmdline').unlink()

    result = fake.autoconfigure()

    assert result.returncode == 1
    assert 'cannot read' in result.stderr


def test_info_goes_to_logger_and_errors_also_to_stderr(fake_root_factory):
    fake = fake_root_factory('8001,0; 8002,9;', ['8001'])

    result = fake.autoconfigure()

    priorities = {c[4] for c in fake.calls('logger')}
    assert priorities == {'user.info', 'user.err'}
    assert 'configured' not in result.stderr
    assert "malformed token '8002,9'" in result.stderr


def test_everything_goes_to_stderr_when_logger_fails(fake_root_factory):
    fake = fake_root_factory('8001,0;', ['8001'])

    result = fake.autoconfigure(DPM_TEST_LOGGER_RC='1')

    assert result.returncode == 0
    assert 'qeth device 0.0.8001 configured' in result.stderr
