"""The pure builders: names, descriptions, command line, boot target, power states."""

from __future__ import annotations

import pytest

from dpm_api.v1 import contract
from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import boot
from dpm_backend import cmdline
from dpm_backend import naming
from dpm_backend import states
from dpm_backend import wwpn
from dpm_backend.host import hypervisor_version

UUID = '0f8e2d4c-1b3a-4c5d-8e6f-7a8b9c0d1e2f'


def test_names_and_descriptions_match_the_original_contract():
    assert naming.partition_name('cpc1', UUID) == f'OpenStack-cpc1-{UUID}'
    assert naming.partition_description('cpc1') == 'OpenStack CPCSubset=cpc1'
    assert naming.nic_name(UUID) == f'OpenStack_Port_{UUID}'
    assert (
        naming.nic_description('cpc1', 'fa:16:3e:00:00:01')
        == 'OpenStack mac=fa:16:3e:00:00:01, CPCSubset=cpc1'
    )
    assert naming.hba_name('aa', 2) == 'OpenStack_Port_aa_2'
    # The original wrote "OpenStack CPCSubset= " + host: a space after '='.
    assert naming.hba_description('cpc1') == 'OpenStack CPCSubset= cpc1'
    assert naming.storage_port_uri('aa', 1) == '/api/adapters/aa/storage-ports/1'
    assert naming.virtual_switch_uri('vs') == '/api/virtual-switches/vs'


def test_longest_host_name_still_fits_an_hmc_name():
    host = 'h' * naming.MAX_HOST_LENGTH
    assert naming.host_name_error(host) is None
    assert len(naming.partition_name(host, UUID)) == 64
    assert naming.host_name_error(host + 'x')


@pytest.mark.parametrize('host', ['', 'cpc.*', 'a b', '-lead', 'cpc1$', 'ü'])
def test_host_names_that_cannot_name_a_partition_are_refused(host):
    assert naming.host_name_error(host)


@pytest.mark.parametrize(
    ('name', 'owner'),
    [
        (f'OpenStack-cpc1-{UUID}', UUID),
        (f'OpenStack-cpc10-{UUID}', None),
        (f'OpenStack-cpc1-a-{UUID}', None),
        (f'OpenStack-CPC1-{UUID}', None),
        (f'OpenStack-cpc1-{UUID.upper()}', None),
        (f'OpenStack-cpc1-{UUID}-x', None),
        ('OpenStack-cpc1-backup', None),
        ('LINUX01', None),
    ],
)
def test_ownership_is_decided_by_the_exact_name(name, owner):
    assert naming.instance_uuid_of('cpc1', name) == owner


def test_hmc_name_filter_escapes_regex_metacharacters():
    import re

    pattern = naming.partition_list_filter('OpenStack-c.p+c-', exact=False)
    assert re.fullmatch(pattern, 'OpenStack-c.p+c-anything')
    assert not re.fullmatch(pattern, 'OpenStack-cXpppc-anything')
    exact = naming.partition_list_filter(f'OpenStack-cpc1-{UUID}', exact=True)
    assert re.fullmatch(exact, f'OpenStack-cpc1-{UUID}')
    assert not re.fullmatch(exact, f'OpenStack-cpc1-{UUID}x')


def test_cmdline_tokens_use_devno_port_and_bare_mac():
    nics = [
        cmdline.NicToken('8001', 1, 'FA:16:3E:00:00:01'),
        cmdline.NicToken('800A', 0, 'fa:16:3e:00:00:02'),
    ]
    assert cmdline.value(nics) == '8001,1,fa163e000001; 800A,0,fa163e000002;'


def test_the_whole_cmdline_is_checked_not_one_token():
    twelve = [cmdline.NicToken('8001', 0, 'fa:16:3e:00:00:01')] * contract.MAX_NICS
    assert cmdline.fits(cmdline.value(twelve))
    assert not cmdline.fits(cmdline.value([*twelve, twelve[0]]))


def test_wwpns_are_normalised_for_comparison():
    assert wwpn.normalise('0xC05076FFE5000001') == 'c05076ffe5000001'
    assert wwpn.normalise(' c05076ffe5000001 ') == 'c05076ffe5000001'
    for bad in ('c05076ffe500000', 'c05076ffe50000011', '0xzz5076ffe5000001', ''):
        assert wwpn.normalise(bad) is None


def test_boot_target_is_the_first_unignored_target_of_the_boot_initiator():
    mapping = {
        'c05076ffe5000002': ['5005076800000001'],
        '0xC05076FFE5000001': ['0X5005076800000009', '5005076800000002'],
    }
    ignore = frozenset({'5005076800000009'})
    assert boot.choose_target('C05076FFE5000001', mapping, ignore) == '5005076800000002'
    with pytest.raises(boot.NoBootPath, match='not an initiator'):
        boot.choose_target('c05076ffe5000003', mapping, ignore)
    with pytest.raises(boot.NoBootPath, match='ignore'):
        boot.choose_target(
            'c05076ffe5000001', mapping, frozenset({'5005076800000002', '5005076800000009'})
        )


def test_boot_properties_address_the_boot_hba_and_the_fcp_lun():
    target = boot.BootTarget('/api/partitions/p/hbas/h', '5005076800000002', 26)
    assert boot.partition_properties(target) == {
        'boot-device': 'storage-adapter',
        'boot-storage-device': '/api/partitions/p/hbas/h',
        'boot-world-wide-port-name': '5005076800000002',
        'boot-logical-unit-number': '001a000000000000',
    }


@pytest.mark.parametrize(
    ('lun', 'fcp_lun'),
    [
        (0, '0000000000000000'),
        (1, '0001000000000000'),
        (255, '00ff000000000000'),
        (256, '0100000000000000'),
        (0x4000, '4000000000000000'),
        (0xFFFF, 'ffff000000000000'),
        # Above 0xffff the LUN takes four bytes (os-brick's second form).
        (0x10000, '0001000000000000'),
        (0x12345678, '1234567800000000'),
    ],
)
def test_boot_lun_is_the_8_byte_fcp_lun_that_os_brick_forms(lun, fcp_lun):
    # os-brick initiator/connectors/fibre_channel_s390x.py: "0x%04x000000000000"
    # up to 0xffff, "0x%08x00000000" above (without the 0x here).
    assert boot.lun_property(lun) == fcp_lun
    assert len(fcp_lun) == 16


def test_every_hmc_partition_status_has_a_power_state():
    hmc_statuses = {
        'active',
        'stopped',
        'terminated',
        'paused',
        'starting',
        'stopping',
        'degraded',
        'reservation-error',
        'status-check',
        'communications-not-active',
    }
    assert set(states.POWER_STATES) == hmc_statuses
    assert states.power_state('paused') == pb.POWER_STATE_SHUTDOWN
    assert states.power_state('starting') == pb.POWER_STATE_UNSPECIFIED
    assert states.power_state('no-such-status') == pb.POWER_STATE_CRASHED


@pytest.mark.parametrize('status', ['status-check', 'communications-not-active'])
def test_lost_se_communication_is_no_power_state_not_a_crash(status):
    # Nova stops an ACTIVE instance reported CRASHED or SHUTDOWN; these say
    # nothing about the guest.
    assert states.power_state(status) == pb.POWER_STATE_UNSPECIFIED


def test_reservation_error_is_shut_down_and_needs_no_stop():
    assert states.power_state('reservation-error') == pb.POWER_STATE_SHUTDOWN
    assert 'reservation-error' in states.NOT_STARTED


def test_hypervisor_version_from_se_version():
    assert hypervisor_version('2.13.1') == 2013001
    assert hypervisor_version('2.15') == 2015000
