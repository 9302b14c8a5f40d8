"""setmac.sh really changes a MAC: a veth pair in a private network namespace.

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) for ``ip netns add``; the
namespace is always deleted afterwards. The fake root maps the veth to the
qeth device 0.0.8001; the real ``ip`` runs inside the namespace.
"""

import re
import subprocess
import uuid

import pytest

IFNAME = 'dpm0'


def ip(*args):
    return subprocess.run(['ip', *args], capture_output=True, text=True, timeout=30, check=False)


def link_mac(namespace, ifname):
    result = ip('-n', namespace, 'link', 'show', 'dev', ifname)
    assert result.returncode == 0, result.stderr
    return re.search(r'link/ether ([0-9a-f:]{17})', result.stdout).group(1)


@pytest.fixture
def namespace():
    name = f'dpm-gt-{uuid.uuid4().hex[:8]}'
    added = ip('netns', 'add', name)
    if added.returncode != 0:
        pytest.skip(f'cannot create a network namespace (needs root): {added.stderr.strip()}')
    try:
        created = ip(
            '-n', name, 'link', 'add', IFNAME, 'type', 'veth', 'peer', 'name', f'{IFNAME}p'
        )
        assert created.returncode == 0, created.stderr
        yield name
    finally:
        ip('netns', 'del', name)


def run_setmac_in(namespace, fake, *args):
    (fake.bin / 'ip').unlink()  # the real ip, inside the namespace
    return fake.setmac(*args, prefix=('ip', 'netns', 'exec', namespace))


@pytest.mark.parametrize('args', [(IFNAME,), ('0.0.8001',), ('0.0.8001', IFNAME)])
def test_setmac_changes_the_mac_of_a_real_interface(namespace, fake_root_factory, args):
    fake = fake_root_factory('root=/dev/dasda1 8001,0,02aabbccddee;')
    fake.add_interface('0.0.8001', IFNAME)
    assert link_mac(namespace, IFNAME) != '02:aa:bb:cc:dd:ee'

    result = run_setmac_in(namespace, fake, *args)

    assert result.returncode == 0, result.stderr
    assert link_mac(namespace, IFNAME) == '02:aa:bb:cc:dd:ee'


@pytest.mark.parametrize(
    'cmdline', ['8001,0,03aabbccddee;', '8001,0;'], ids=['multicast', 'no-mac']
)
def test_setmac_leaves_a_real_interface_alone_when_it_must(namespace, fake_root_factory, cmdline):
    fake = fake_root_factory(cmdline)
    fake.add_interface('0.0.8001', IFNAME)
    before = link_mac(namespace, IFNAME)

    run_setmac_in(namespace, fake, IFNAME)

    assert link_mac(namespace, IFNAME) == before
