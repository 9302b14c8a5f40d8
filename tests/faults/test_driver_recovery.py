"""The Nova driver across a backend that dies mid-spawn and restarts.

For every HMC request k of a spawn (with a little injected HMC latency), the
backend stops dead at k: its request never completes and it never makes
another one, and the process is gone (server stopped without grace). A new
backend starts on the same socket and the same HMC. nova-compute's retry of the
spawn through the driver must then leave exactly one partition, configured
exactly as a spawn without the failure does. The death is simulated
in-process (see test_recovery.py); the HMC is the simulator, which outlives it.
"""

from __future__ import annotations

import threading
import time
import uuid
from unittest import mock

import pytest
import zhmcclient
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import load_config
from dpmtest import pristine
from dpmtest import write_config
from nova.conf import CONF
from nova.network import model as network_model

from dpm_backend import naming
from dpm_backend.server import Backend
from dpm_frontend import conf as dpm_conf
from dpm_frontend import driver as driver_mod
from nova import exception
from nova import objects
from nova.virt import fake

objects.register_all()
dpm_conf.register_opts(CONF)
HOST = 'cpc1'
TARGET = '500507680b2142e5'
LATENCY = 0.002


class Death:
    """Stops its backend dead at the k-th request after it is armed."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.seen = 0
        self.armed = False
        self.dead = False
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, method, uri, proceed):
        if self.dead:
            raise zhmcclient.ConnectionError('the backend process is dead', None)
        time.sleep(LATENCY)
        if self.armed:
            self.seen += 1
            if self.seen == self.k:
                self.dead = True
                self.reached.set()
                self.release.wait(30)
                raise zhmcclient.ConnectionError('the backend process is dead', None)
        return proceed()


def configure(tmp_path, name: str, served):
    host = HostSpec(HOST, INVENTORY['z13'], mappings=tuple(f'{a}:0' for a in INVENTORY['fcp']))
    path = write_config(tmp_path / f'{name}.conf', tmp_path / 'b.sock', [host], hmc=served)
    return load_config(path)


def new_instance():
    instance = objects.Instance(
        uuid=str(uuid.uuid4()),
        host=HOST,
        vm_state='building',
        task_state=None,
        image_ref='',
        system_metadata={},
        flavor=objects.Flavor(vcpus=2, memory_mb=2048),
    )
    return instance


def spawn_args(drv, instance):
    vifs = network_model.NetworkInfo(
        [
            network_model.VIF(
                id=port,
                address=f'fa:16:3e:00:00:0{index}',
                type='dpm_vswitch',
                details={'object_id': INVENTORY[switch]},
                active=True,
            )
            for index, (port, switch) in enumerate(
                [
                    ('1b2c3d4e-5f6a-4b7c-8d9e-0000000000a1', 'vswitch_osa1'),
                    ('1b2c3d4e-5f6a-4b7c-8d9e-0000000000a2', 'vswitch_hs'),
                ]
            )
        ]
    )
    wwpns = drv.get_volume_connector(instance)['wwpns']
    bdi = {
        'block_device_mapping': [
            {
                'boot_index': 0,
                'connection_info': {
                    'driver_volume_type': 'fibre_channel',
                    'data': {'target_lun': 1, 'initiator_target_map': {w: [TARGET] for w in wwpns}},
                },
            }
        ]
    }
    return (None, instance, None, [], None, {}, vifs, bdi)


def configured(hmc, instance) -> dict:
    """The partition as Nova's user sees it, with HMC-assigned ids resolved."""
    cpc = hmc.cpcs.lookup_by_oid(INVENTORY['z13'])
    name = naming.partition_name(HOST, instance.uuid)
    partitions = [p for p in cpc.partitions.list() if p.properties['name'] == name]
    assert len(partitions) == 1, f'{len(partitions)} partitions named {name}'
    props = partitions[0].properties
    nics = {n.properties['element-uri']: n.properties for n in partitions[0].nics.list()}
    hbas = {h.properties['element-uri']: h.properties for h in partitions[0].hbas.list()}
    cmdline = props['boot-os-specific-parameters']
    for nic in nics.values():
        cmdline = cmdline.replace(nic['device-number'], nic['name'])
    return {
        'status': props['status'],
        'sizes': (props['ifl-processors'], props['initial-memory']),
        'nics': sorted(
            (n['name'], n['description'], n['virtual-switch-uri']) for n in nics.values()
        ),
        'hbas': sorted(h['name'] for h in hbas.values()),
        'cmdline': cmdline,
        'boot': (
            props['boot-device'],
            hbas[props['boot-storage-device']]['name'],
            props['boot-world-wide-port-name'],
            props['boot-logical-unit-number'],
        ),
    }


@pytest.fixture
def driver(tmp_path):
    CONF.set_override('host', HOST)
    CONF.set_override('backend', f'unix:{tmp_path / "b.sock"}', group='dpm')
    CONF.set_override('retry_interval', 0.2, group='dpm')
    CONF.set_override('unavailable_retries', 20, group='dpm')
    CONF.set_override('vif_plugging_timeout', 0)
    drv = driver_mod.DPMDriver(fake.FakeVirtAPI())
    with mock.patch.object(objects.Instance, 'save'):
        yield drv
    drv.cleanup_host(HOST)
    for name in ('host', 'vif_plugging_timeout'):
        CONF.clear_override(name)
    for name in ('backend', 'retry_interval', 'unavailable_retries'):
        CONF.clear_override(name, group='dpm')


def reference(tmp_path, driver, served) -> dict:
    backend = Backend(configure(tmp_path, 'ref', served))
    backend.start()
    try:
        instance = new_instance()
        driver.prepare_for_spawn(instance)
        driver.spawn(*spawn_args(driver, instance))
        return configured(served.sim.hmc, instance)
    finally:
        backend.stop(0)


def test_spawn_retried_through_the_driver_after_backend_death_converges(tmp_path, driver, hmc_sim):
    expected = reference(tmp_path, driver, hmc_sim)
    cases = 0
    for k in range(1, 40):
        pristine(hmc_sim)
        death = Death(k)
        first = Backend(configure(tmp_path, f'a{k}', hmc_sim), interceptors=[death])
        first.start()
        instance = new_instance()
        driver.prepare_for_spawn(instance)
        args = spawn_args(driver, instance)
        death.armed = True
        outcome = {}

        def spawn(args=args, outcome=outcome):
            try:
                driver.spawn(*args)
            except Exception as exc:  # what nova-compute would see
                outcome['error'] = exc

        thread = threading.Thread(target=spawn)
        thread.start()
        if not death.reached.wait(timeout=5 if k > 1 else 10):
            # The spawn needs fewer than k requests: every point has been covered.
            thread.join(30)
            first.stop(0)
            assert 'error' not in outcome
            break
        first.stop(0)  # the process is gone
        death.release.set()
        second = Backend(configure(tmp_path, f'b{k}', hmc_sim))
        second.start()
        try:
            thread.join(60)
            assert not thread.is_alive()
            if 'error' in outcome:
                # The call failed while the backend was away; Nova's retry of
                # the operation goes through the driver again.
                assert isinstance(
                    outcome['error'], (exception.VirtDriverNotReady, exception.NovaException)
                ), outcome['error']
                driver.spawn(*args)
            assert configured(hmc_sim.sim.hmc, instance) == expected, k
        finally:
            second.stop(0)
        cases += 1
    # Every request of the spawn was a point of death (a spawn makes several).
    assert cases >= 5, cases
