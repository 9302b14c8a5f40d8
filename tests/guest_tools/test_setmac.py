"""setmac.sh end to end on a fake root with a recording ip shim."""

import pytest


def ip_set_address(ifname, mac):
    return ['ip', 'link', 'set', 'dev', ifname, 'address', mac]


@pytest.fixture
def fake(fake_root_factory):
    fake = fake_root_factory('root=/dev/dasda1 8001,0,0a1b2c3d4e5f; 800A,1,fa163e000001; 8004,0;')
    fake.add_interface('0.0.8001', 'enc8001')
    fake.add_interface('0.0.800a', 'enc800a')
    fake.add_interface('0.0.8004', 'enc8004')
    return fake


@pytest.mark.parametrize(
    'args',
    [('0.0.8001', 'enc8001'), ('0.0.8001',), ('enc8001',)],
    ids=['busid-and-interface', 'busid-only', 'interface-only'],
)
def test_mac_is_set_from_the_token_of_the_device(fake, args):
    result = fake.setmac(*args)

    assert result.returncode == 0, result.stderr
    assert fake.calls('ip') == [ip_set_address('enc8001', '0a:1b:2c:3d:4e:5f')]


@pytest.mark.parametrize('args', [('0.0.800a',), ('0.0.800A', 'enc800a'), ('enc800a',)])
def test_upper_case_devno_in_token_matches_lower_case_bus_id(fake, args):
    result = fake.setmac(*args)

    assert result.returncode == 0, result.stderr
    assert fake.calls('ip') == [ip_set_address('enc800a', 'fa:16:3e:00:00:01')]


def test_token_without_mac_leaves_the_mac_alone(fake):
    result = fake.setmac('0.0.8004', 'enc8004')

    assert result.returncode == 0, result.stderr
    assert fake.calls('ip') == []
    assert any('has no MAC' in ' '.join(c) for c in fake.calls('logger'))


def test_device_without_token_leaves_the_mac_alone(fake):
    fake.add_interface('0.0.9001', 'enc9001')

    result = fake.setmac('0.0.9001', 'enc9001')

    assert result.returncode == 0, result.stderr
    assert fake.calls('ip') == []


@pytest.mark.parametrize('first_octet', ['02', '06', '0a', '0e', 'fa', 'FE'])
def test_locally_administered_unicast_mac_is_accepted(fake, first_octet):
    fake.set_cmdline(f'8001,0,{first_octet}0000000011;')

    result = fake.setmac('0.0.8001', 'enc8001')

    assert result.returncode == 0, result.stderr
    assert fake.calls('ip') == [ip_set_address('enc8001', f'{first_octet.lower()}:00:00:00:00:11')]


@pytest.mark.parametrize(
    'mac',
    [
        '001122334455',  # universally administered unicast
        '0c0000000011',  # universal, bit 0/1 clear
        '010000000011',  # multicast
        '030000000011',  # locally administered multicast
        'ffffffffffff',  # broadcast
        'fb163e000001',
    ],
)
def test_mac_that_is_not_locally_administered_unicast_is_refused(fake, mac):
    fake.set_cmdline(f'8001,0,{mac};')

    result = fake.setmac('0.0.8001', 'enc8001')

    assert result.returncode == 1
    assert 'not a locally administered unicast address' in result.stderr
    assert fake.calls('ip') == []


def test_failing_ip_is_reported(fake):
    result = fake.setmac('0.0.8001', 'enc8001', DPM_TEST_IP_RC='2')

    assert result.returncode == 1
    assert 'cannot set the MAC of enc8001 to 0a:1b:2c:3d:4e:5f' in result.stderr


def test_malformed_token_elsewhere_fails_but_the_mac_is_set(fake):
    fake.set_cmdline('8001,0,0a1b2c3d4e5f; 8002,7;')

    result = fake.setmac('0.0.8001', 'enc8001')

    assert result.returncode == 1
    assert "malformed token '8002,7'" in result.stderr
    assert fake.calls('ip') == [ip_set_address('enc8001', '0a:1b:2c:3d:4e:5f')]


def test_token_inside_another_parameter_is_not_used(fake):
    fake.set_cmdline('foo=8001,0,0a0000000011; bar=x')

    result = fake.setmac('0.0.8001', 'enc8001')

    assert result.returncode == 0, result.stderr
    assert fake.calls('ip') == []


@pytest.mark.parametrize(
    'args',
    [
        (),
        ('0.0.8001', 'enc8001', 'extra'),
        ('enc8001', 'enc8001'),  # interface where the bus id belongs
        ('0.0.80011',),
        ('-v',),
        ('0.0.8001', 'enc8001;ip'),
        ('0.0.8001', 'x' * 16),
    ],
)
def test_bad_arguments_are_refused(fake, args):
    result = fake.setmac(*args)

    assert result.returncode == 1
    assert fake.calls('ip') == []


def test_interface_without_qeth_device_is_refused(fake):
    (fake.root / 'sys/class/net/lo').mkdir()

    result = fake.setmac('lo')

    assert result.returncode == 1
    assert 'no qeth bus id found for interface lo' in result.stderr
    assert fake.calls('ip') == []


def test_bus_id_without_interface_is_refused(fake):
    result = fake.setmac('0.0.9001')

    assert result.returncode == 1
    assert 'no network interface found for 0.0.9001' in result.stderr
