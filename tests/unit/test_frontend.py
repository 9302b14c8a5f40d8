"""The driver against a grpc_testing channel: translation, deadlines, error mapping.

The test plays the backend: it takes each RPC the driver makes from the testing
channel, checks the request and the deadline, and answers with a reply or with
the status the real backend would send.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import queue
import threading
import types
import uuid
from unittest import mock

import grpc
import grpc_testing
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status
from nova.compute import power_state
from nova.compute import task_states
from nova.compute import vm_states
from nova.conf import CONF
from nova.network import model as network_model
from oslo_context import context as oslo_context

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import correlation
from dpm_backend import errors
from dpm_frontend import client as client_mod
from dpm_frontend import driver as driver_mod
from dpm_frontend import translate
from nova import context as nova_context
from nova import exception
from nova import objects
from nova.virt import driver
from nova.virt import fake

objects.register_all()
SERVICE = pb.DESCRIPTOR.services_by_name['DPMHost']
HOST = 'cpc1'
# Where the driver stores the instance's WWPNs on HOST.
KEY = translate.wwpns_key(HOST)
VSWITCH = '5a9b2c3d-7e8f-4a1b-9c2d-3e4f5a6b7c01'
WWPNS = ['c05076ffe5000001', 'c05076ffe5000002']
TARGET = '500507680b2142e5'
REPO = pathlib.Path(__file__).resolve().parents[2]


class DeadlineRecorder:
    """A channel wrapper recording the method, timeout and metadata of each call.

    (grpc.intercept_channel passes arguments grpc_testing's channel lacks.)
    """

    def __init__(self, channel):
        self.channel = channel
        self.calls = []

    def unary_unary(self, method, *args, **kwargs):
        inner = self.channel.unary_unary(method, *args, **kwargs)

        def call(request, timeout=None, metadata=None, **rest):
            self.calls.append((method.rsplit('/', 1)[-1], timeout, metadata))
            return inner(request, timeout=timeout, metadata=metadata, **rest)

        return call

    def unary_stream(self, method, *args, **kwargs):
        return self.channel.unary_stream(method, *args, **kwargs)

    def close(self):
        self.channel.close()


class FakeClock:
    """time.monotonic and time.sleep for the client: time passes only when told."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FailedCall(grpc.RpcError):
    """A failed call as grpc raises it: code, details, trailing metadata."""

    def __init__(self, status: grpc.Status):
        super().__init__(status.details)
        self._status = status

    def code(self):
        return self._status.code

    def details(self):
        return self._status.details

    def trailing_metadata(self):
        return self._status.trailing_metadata


def failed_call(code: grpc.StatusCode, reason: str = '', message: str = 'refused') -> FailedCall:
    """What the backend raises for ``code`` with ErrorInfo ``reason`` (domain dpm_api.v1)."""
    details = []
    if reason:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain='dpm_api.v1'))
        details.append(detail)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return FailedCall(rpc_status.to_status(status))


class ScriptedChannel:
    """A channel whose calls run ``answer(method, request, timeout)`` at once.

    ``answer`` returns the reply or raises; ``calls`` records (method, timeout).
    """

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def unary_unary(self, method, *args, **kwargs):
        name = method.rsplit('/', 1)[-1]

        def call(request, timeout=None, metadata=None, **rest):
            self.calls.append((name, timeout))
            return self.answer(name, request, timeout)

        return call

    def unary_stream(self, method, *args, **kwargs):
        def call(request, timeout=None, metadata=None, **rest):
            raise AssertionError(f'{method} streams: tests/transport/test_lifecycle_events.py')

        return call

    def close(self):
        pass


def scripted_driver(answer, clock=None):
    clock = clock or FakeClock()
    channel = ScriptedChannel(answer)
    CONF.set_override('host', HOST)
    try:
        drv = driver_mod.DPMDriver(fake.FakeVirtAPI())
    finally:
        CONF.clear_override('host')
    drv._client = client_mod.BackendClient(channel, CONF, sleep=clock.sleep, clock=clock)
    return drv, channel


class Backend:
    """Answers the driver's RPCs on a grpc_testing channel."""

    def __init__(self, channel):
        self.channel = channel

    def _take(self, method):
        """The next call of ``method``; fails instead of hanging if none comes."""
        taken = queue.Queue()
        descriptor = SERVICE.methods_by_name[method]
        threading.Thread(
            target=lambda: taken.put(self.channel.take_unary_unary(descriptor)), daemon=True
        ).start()
        try:
            return taken.get(timeout=10)
        except queue.Empty:
            raise AssertionError(f'the driver never called {method}') from None

    def answer(self, method, response=None, error: errors.DPMError | None = None):
        _, request, rpc = self._take(method)
        if error is None:
            rpc.terminate(response, (), grpc.StatusCode.OK, '')
        else:
            status = error.to_status()
            rpc.terminate(None, status.trailing_metadata, status.code, status.details)
        return request


NODE_UUID = '5c9d0a1e-7b3f-4e2d-8a6c-1f0e9d8c7b6a'


@pytest.fixture
def harness(tmp_path, monkeypatch):
    # Nova's node identity file lives in nova-compute's state_path.
    monkeypatch.setattr(driver_mod.virt_node, 'get_local_node_uuid', lambda: NODE_UUID)
    CONF.set_override('host', HOST)
    CONF.set_override('retry_interval', 0, group='dpm')
    token = tmp_path / 'token'
    token.write_text('s3cr3t-token\n')
    CONF.set_override('token_file', str(token), group='dpm')
    channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
    recorder = DeadlineRecorder(channel)
    drv = driver_mod.DPMDriver(fake.FakeVirtAPI())
    # A frozen clock: every attempt's timeout is exactly the configured deadline.
    clock = FakeClock()
    drv._client = client_mod.BackendClient(recorder, CONF, sleep=clock.sleep, clock=clock)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    yield drv, Backend(channel), recorder, pool
    pool.shutdown(wait=False)
    CONF.clear_override('host')
    CONF.clear_override('retry_interval', group='dpm')
    CONF.clear_override('token_file', group='dpm')


def make_instance(image_ref='', wwpns=None, task_state=None, **flavor):
    sysmeta = {KEY: ','.join(wwpns)} if wwpns else {}
    return objects.Instance(
        uuid=str(uuid.uuid4()),
        image_ref=image_ref,
        system_metadata=sysmeta,
        host=HOST,
        task_state=task_state,
        vm_state='active',
        flavor=objects.Flavor(vcpus=flavor.get('vcpus', 2), memory_mb=flavor.get('mem', 2048)),
    )


def vif(port_id=None, vif_type='dpm_vswitch', details=None, active=True, mac='fa:16:3e:00:00:01'):
    return network_model.VIF(
        id=port_id or str(uuid.uuid4()),
        address=mac,
        type=vif_type,
        details={'object_id': VSWITCH} if details is None else details,
        active=active,
    )


def info(instance, state=pb.POWER_STATE_RUNNING):
    return pb.InstanceInfo(instance_uuid=instance.uuid, power_state=state)


@pytest.mark.parametrize(
    ('state', 'nova_state'),
    [
        (pb.POWER_STATE_RUNNING, power_state.RUNNING),
        (pb.POWER_STATE_SHUTDOWN, power_state.SHUTDOWN),
        (pb.POWER_STATE_CRASHED, power_state.CRASHED),
        (pb.POWER_STATE_UNSPECIFIED, power_state.NOSTATE),
    ],
)
def test_get_info_maps_power_states_with_the_read_deadline_and_token(harness, state, nova_state):
    drv, backend, recorder, pool = harness
    instance = make_instance()
    future = pool.submit(drv.get_info, instance)
    request = backend.answer(
        'GetInstanceInfo', pb.GetInstanceInfoResponse(info=info(instance, state))
    )
    assert future.result(5).state == nova_state
    assert (request.host, request.instance_uuid) == (HOST, instance.uuid)
    (method, timeout, metadata) = recorder.calls[0]
    assert method == 'GetInstanceInfo' and timeout == CONF.dpm.read_deadline
    assert ('authorization', 'Bearer s3cr3t-token') in metadata


def test_missing_partition_is_instance_not_found(harness):
    drv, backend, _, pool = harness
    instance = make_instance()
    future = pool.submit(drv.get_info, instance)
    backend.answer('GetInstanceInfo', error=errors.instance_not_found(HOST, instance.uuid))
    with pytest.raises(exception.InstanceNotFound):
        future.result(5)
    future = pool.submit(drv.instance_exists, instance)
    backend.answer('GetInstanceInfo', error=errors.instance_not_found(HOST, instance.uuid))
    assert future.result(5) is False


def unavailable():
    return errors.from_hmc(__import__('zhmcclient').ConnectionError('down', None), 'list')


def test_idempotent_calls_are_retried_while_unavailable_then_not_ready(harness):
    drv, backend, recorder, pool = harness
    future = pool.submit(drv.list_instance_uuids)
    for _ in range(1 + CONF.dpm.unavailable_retries):
        backend.answer('ListInstances', error=unavailable())
    with pytest.raises(exception.VirtDriverNotReady):
        future.result(5)
    assert len(recorder.calls) == 1 + CONF.dpm.unavailable_retries


def test_a_retry_that_succeeds_returns_the_answer(harness):
    drv, backend, _, pool = harness
    future = pool.submit(drv.list_instance_uuids)
    backend.answer('ListInstances', error=errors.backend_busy(16))
    backend.answer(
        'ListInstances',
        pb.ListInstancesResponse(instances=[pb.InstanceInfo(instance_uuid='u1')]),
    )
    assert future.result(5) == ['u1']


def test_reboot_is_not_retried_and_failures_name_the_operation(harness):
    drv, backend, recorder, pool = harness
    instance = make_instance()
    future = pool.submit(drv.reboot, None, instance, [], 'HARD')
    backend.answer('Reboot', error=unavailable())
    with pytest.raises(exception.VirtDriverNotReady):
        future.result(5)
    assert [c[0] for c in recorder.calls] == ['Reboot']
    assert recorder.calls[0][1] == CONF.dpm.power_deadline
    future = pool.submit(drv.power_off, instance)
    backend.answer('PowerOff', error=errors.hmc_timeout('stop partition'))
    with pytest.raises(exception.InstancePowerOffFailure, match='did not finish in time'):
        future.result(5)


def test_prepare_for_spawn_creates_the_partition_and_persists_the_wwpns(harness):
    drv, backend, recorder, pool = harness
    instance = make_instance(vcpus=3, mem=4096)
    with mock.patch.object(objects.Instance, 'save') as save:
        future = pool.submit(drv.prepare_for_spawn, instance)
        request = backend.answer('PrepareInstance', pb.PrepareInstanceResponse(wwpns=WWPNS))
        future.result(5)
        assert (request.flavor.vcpus, request.flavor.memory_mb) == (3, 4096)
        assert recorder.calls[0][1] == CONF.dpm.prepare_deadline
        assert instance.system_metadata[KEY] == ','.join(WWPNS)
        save.assert_called_once_with()
        # The connector now needs no backend call, also after destroy or a restart.
        assert drv.get_volume_connector(instance) == {'wwpns': WWPNS, 'host': instance.uuid}
    assert len(recorder.calls) == 1


def test_destroy_of_an_instance_without_wwpns_stores_those_destroy_returns(harness):
    """An instance the original nova-dpm created never had its connector asked for here."""
    drv, backend, recorder, pool = harness
    instance = make_instance()
    with mock.patch.object(objects.Instance, 'save') as save:
        future = pool.submit(drv.destroy, None, instance, [])
        request = backend.answer('Destroy', pb.DestroyResponse(existed=True, wwpns=WWPNS))
        future.result(5)
        assert (request.instance_uuid, request.wwpns_known) == (instance.uuid, False)
        assert recorder.calls[0][1] == CONF.dpm.power_deadline
        assert instance.system_metadata[KEY] == ','.join(WWPNS)
        save.assert_called_once_with()
        # After destroy Nova asks for the connector: answered without a call.
        assert drv.get_volume_connector(instance) == {'wwpns': WWPNS, 'host': instance.uuid}
        assert [c[0] for c in recorder.calls] == ['Destroy']
        # A retried destroy (partition gone, nothing returned) keeps what was stored.
        future = pool.submit(drv.destroy, None, instance, [])
        request = backend.answer('Destroy', pb.DestroyResponse(existed=False))
        future.result(5)
        assert request.wwpns_known is True
        assert drv.get_volume_connector(instance)['wwpns'] == WWPNS
        save.assert_called_once_with()


def test_destroy_does_not_ask_for_wwpns_the_instance_holds(harness):
    drv, backend, _, pool = harness
    instance = make_instance(wwpns=WWPNS)
    with mock.patch.object(objects.Instance, 'save') as save:
        future = pool.submit(drv.destroy, None, instance, [])
        request = backend.answer('Destroy', pb.DestroyResponse(existed=True))
        future.result(5)
        assert request.wwpns_known is True
        assert instance.system_metadata[KEY] == ','.join(WWPNS)
        save.assert_not_called()


def test_destroy_that_finds_nothing_stores_nothing(harness):
    """A retried destroy without stored WWPNs: nothing to keep, the connector stays unknown."""
    drv, backend, _, pool = harness
    instance = make_instance()
    with mock.patch.object(objects.Instance, 'save') as save:
        future = pool.submit(drv.destroy, None, instance, [])
        backend.answer('Destroy', pb.DestroyResponse(existed=False))
        future.result(5)
        assert KEY not in instance.system_metadata
        save.assert_not_called()


@pytest.mark.parametrize(
    ('error', 'nova_error'),
    [
        (errors.capacity_exceeded(HOST, 'full'), exception.ComputeResourcesUnavailable),
        (errors.cpc_not_usable(HOST, 'CPC in service'), exception.ComputeResourcesUnavailable),
        (errors.invalid_field('flavor.vcpus', 'bad'), exception.InvalidInput),
        (errors.host_not_found(HOST), client_mod.DPMBackendError),
        (
            errors.partition_running('OpenStack-cpc1-x', 'active', (2, 2048), (4, 4096)),
            exception.InstanceInvalidState,
        ),
    ],
)
def test_prepare_errors_become_exceptions_nova_handles(harness, error, nova_error):
    drv, backend, _, pool = harness
    future = pool.submit(drv.prepare_for_spawn, make_instance())
    backend.answer('PrepareInstance', error=error)
    with pytest.raises(nova_error) as caught:
        future.result(5)
    if nova_error is client_mod.DPMBackendError:
        assert '[DEFAULT]host' in str(caught.value)
    if nova_error is exception.InstanceInvalidState:
        assert 'partition status active' in str(caught.value)


def test_image_boot_is_refused_before_any_call(harness):
    drv, _, recorder, _ = harness
    with pytest.raises(exception.InstanceUnacceptable, match='fibre channel volume'):
        drv.prepare_for_spawn(make_instance(image_ref='cedef40a-ed67-4d10-800e-17455edce175'))
    assert recorder.calls == []


@pytest.mark.parametrize(
    ('vifs', 'words'),
    [
        ([vif(vif_type='ovs')], 'only dpm_vswitch'),
        ([vif(details={'object_id': VSWITCH, 'vlan': 100})], 'VLAN 100'),
        ([vif(details={})], 'virtual switch'),
        ([vif(mac=f'fa:16:3e:00:00:{i:02x}') for i in range(13)], 'at most 12'),
    ],
)
def test_vifs_dpm_cannot_attach_are_refused_before_any_call(harness, vifs, words):
    drv, _, recorder, _ = harness
    with pytest.raises(exception.InstanceUnacceptable, match=words):
        drv.prepare_networks_before_block_device_mapping(
            make_instance(), network_model.NetworkInfo(vifs)
        )
    assert recorder.calls == []


def bdi(data):
    return {
        'block_device_mapping': [
            {
                'boot_index': 0,
                'connection_info': {'driver_volume_type': 'fibre_channel', 'data': data},
            }
        ]
    }


def test_spawn_translates_ports_and_the_fc_boot_volume(harness):
    drv, backend, recorder, pool = harness
    instance = make_instance(wwpns=WWPNS)
    vifs = [vif(mac='fa:16:3e:00:00:01'), vif(mac='fa:16:3e:00:00:02')]
    data = {'target_lun': 5, 'initiator_target_map': {WWPNS[0]: [TARGET], WWPNS[1]: [TARGET]}}
    CONF.set_override('vif_plugging_timeout', 0)
    try:
        future = pool.submit(
            drv.spawn,
            None,
            instance,
            None,
            [],
            None,
            {},
            network_model.NetworkInfo(vifs),
            bdi(data),
        )
        request = backend.answer('Spawn', pb.SpawnResponse(info=info(instance)))
        future.result(5)
    finally:
        CONF.clear_override('vif_plugging_timeout')
    assert [(n.port_id, n.mac, n.vif_type, n.vswitch_object_id) for n in request.nics] == [
        (v['id'], v['address'], 'dpm_vswitch', VSWITCH) for v in vifs
    ]
    assert not any(n.HasField('vlan') for n in request.nics)
    assert request.boot_volume.target_lun == 5
    assert {
        m.initiator_wwpn: list(m.target_wwpns) for m in request.boot_volume.initiator_target_map
    } == data['initiator_target_map']
    assert request.leave_stopped is False
    assert (request.flavor.vcpus, request.flavor.memory_mb) == (2, 2048)
    assert [c[:2] for c in recorder.calls] == [('Spawn', CONF.dpm.spawn_deadline)]


def test_boot_volume_without_a_map_is_mapped_from_the_connector():
    volume = translate.boot_volume(bdi({'target_lun': [7], 'target_wwn': TARGET}), WWPNS)
    assert volume.target_lun == 7
    assert {m.initiator_wwpn: list(m.target_wwpns) for m in volume.initiator_target_map} == {
        w: [TARGET] for w in WWPNS
    }
    assert translate.boot_volume({}, WWPNS) is None
    with pytest.raises(exception.InvalidInput, match='iscsi'):
        translate.boot_volume(
            {
                'block_device_mapping': [
                    {
                        'boot_index': 0,
                        'connection_info': {'driver_volume_type': 'iscsi', 'data': {}},
                    }
                ]
            },
            WWPNS,
        )


def test_spawn_waiting_for_ports_leaves_the_partition_stopped_then_powers_on(harness):
    drv, backend, recorder, pool = harness
    instance = make_instance(wwpns=WWPNS)
    port = str(uuid.uuid4())
    CONF.set_override('vif_plugging_timeout', 30)
    try:
        future = pool.submit(
            drv.spawn,
            None,
            instance,
            None,
            [],
            None,
            {},
            network_model.NetworkInfo([vif(port_id=port, active=False)]),
            bdi({'target_lun': 1, 'target_wwn': [TARGET]}),
        )
        spawn = backend.answer('Spawn', pb.SpawnResponse(info=info(instance)))
        backend.answer('PowerOn', pb.PowerOnResponse(info=info(instance)))
        future.result(5)
    finally:
        CONF.clear_override('vif_plugging_timeout')
    assert spawn.leave_stopped is True
    assert [c[0] for c in recorder.calls] == ['Spawn', 'PowerOn']


def test_resources_come_from_the_cpc_subset_without_disk(harness):
    drv, backend, recorder, pool = harness
    status = pb.HostStatus(
        host=HOST,
        cpc_name='CPCZ13',
        hypervisor_type='PRSM',
        hypervisor_version=2013001,
        cpu_arch='s390x',
        vcpus_total=8,
        vcpus_used=2,
        memory_mb_total=16384,
        memory_mb_used=4096,
    )
    future = pool.submit(drv.get_available_resource, HOST)
    backend.answer('GetHostStatus', pb.GetHostStatusResponse(status=status))
    resources = future.result(5)
    assert (resources['vcpus'], resources['memory_mb'], resources['local_gb']) == (8, 16384, 0)
    assert (resources['vcpus_used'], resources['memory_mb_used']) == (2, 4096)
    assert resources['hypervisor_type'] == 'PRSM'
    assert resources['supported_instances'] == [('s390x', 'prsm', 'hvm')]
    assert resources['uuid'] == next(iter(drv.get_nodenames_by_uuid()))

    from nova.compute import provider_tree

    tree = provider_tree.ProviderTree()
    assert resources['uuid'] == NODE_UUID  # Nova's own node identity
    tree.new_root(HOST, resources['uuid'])
    CONF.set_override('cpu_allocation_ratio', 2.0)
    CONF.set_override('reserved_host_memory_mb', 1024)
    try:
        drv.update_provider_tree(tree, HOST)  # reuses the status just read
    finally:
        CONF.clear_override('cpu_allocation_ratio')
        CONF.clear_override('reserved_host_memory_mb')
    inventory = tree.data(HOST).inventory
    assert set(inventory) == {'VCPU', 'MEMORY_MB'}
    assert (inventory['VCPU']['total'], inventory['VCPU']['allocation_ratio']) == (8, 2.0)
    assert (inventory['MEMORY_MB']['total'], inventory['MEMORY_MB']['reserved']) == (16384, 1024)
    assert [c[0] for c in recorder.calls] == ['GetHostStatus']


def test_init_host_refuses_eventlet_mode_with_how_to_switch(monkeypatch):
    from nova import monkey_patch

    monkeypatch.setattr(monkey_patch, 'is_patched', lambda: True)
    drv = driver_mod.DPMDriver(fake.FakeVirtAPI())
    with pytest.raises(exception.NovaException, match='concurrency_backend = threading'):
        drv.init_host(HOST)


def _works(operation) -> bool:
    """Whether the driver does ``operation`` (anything but NotImplementedError)."""
    try:
        operation()
    except NotImplementedError:
        return False
    except exception.NovaException:
        return False  # refused as unsupported for this instance
    return True


def test_capabilities_claim_what_the_driver_does(harness):
    """Nova schedules and checks API calls by these claims (as traits): each one
    matches what the driver does when Nova relies on it."""
    drv, _, recorder, _ = harness
    caps = drv.capabilities
    instance = make_instance()
    image_backed = make_instance(image_ref='cedef40a-ed67-4d10-800e-17455edce175')
    image_types = {name for name in caps if name.startswith('supports_image_type_')}
    claims = {
        # NICs are described to the guest on the kernel command line, at spawn only.
        'supports_attach_interface': lambda: drv.attach_interface(None, instance, None, vif()),
        'supports_extend_volume': lambda: drv.extend_volume(None, FC_VOLUME, instance, 2**30),
        # Whatever the image type: the partition boots from a fibre channel volume.
        **dict.fromkeys(image_types, lambda: drv.prepare_for_spawn(image_backed)),
    }
    for name, operation in claims.items():
        assert caps[name] == _works(operation), name
    assert recorder.calls == []
    # No local disk, so no image cache to manage.
    has_cache = type(drv).manage_image_cache is not driver.ComputeDriver.manage_image_cache
    assert caps['has_imagecache'] == has_cache


@pytest.mark.parametrize('name', ['dpm.DPMDriver', 'dpm.driver.DPMDriver'])
def test_nova_loads_the_driver_by_the_seed_names_from_the_installed_shim(name):
    import nova.virt.dpm
    from nova.virt import driver as virt_driver

    loaded = virt_driver.load_compute_driver(fake.FakeVirtAPI(), name)
    assert isinstance(loaded, driver_mod.DPMDriver)
    # The shim comes from the installed wheel, inside nova's own package tree
    # (nova imports nova.virt.<driver> only), not from this working tree.
    shim = pathlib.Path(nova.virt.dpm.__file__).resolve()
    assert shim.parent.parent == pathlib.Path(nova.virt.__file__).resolve().parent
    assert not shim.is_relative_to(REPO / 'nova')


def test_nova_sample_config_lists_every_dpm_option():
    from dpm_frontend import conf as dpm_conf

    sample = pathlib.Path(__file__).parents[2] / 'deploy' / 'nova-dpm.conf.sample'
    text = sample.read_text()
    assert '[dpm]' in text
    for _, opts in dpm_conf.list_opts():
        for opt in opts:
            assert f'#{opt.dest} =' in text, opt.dest


def test_init_host_says_what_is_wrong_with_the_backend_or_the_cpc(harness):
    drv, backend, _, pool = harness
    future = pool.submit(drv.init_host, HOST)
    for _ in range(1 + CONF.dpm.unavailable_retries):
        backend.answer('GetHostStatus', error=unavailable())
    with pytest.raises(client_mod.DPMBackendError, match=r'\[dpm\] backend'):
        future.result(5)
    future = pool.submit(drv.init_host, HOST)
    backend.answer('GetHostStatus', error=errors.cpc_not_usable(HOST, 'CPC X is not in DPM mode'))
    with pytest.raises(client_mod.DPMBackendError, match='not in DPM mode'):
        future.result(5)


# -- deadlines: one budget per Nova call --------------------------------------


@pytest.mark.parametrize(
    ('deadline', 'spent', 'interval', 'timeouts'),
    [
        # Each attempt takes 8 s before UNAVAILABLE: the third ends at 28 s,
        # and a retry after 2 s more would start with 0 s left.
        (30, 8, 2, [30, 20, 10]),
        # Failing at once: all retries fit, each with what is left.
        (30, 0, 2, [30, 28, 26, 24]),
        # Less than the minimum left after the pause: no retry starts.
        (5, 3.5, 1, [5]),
    ],
)
def test_the_deadline_bounds_the_whole_call_retries_and_pauses_included(
    deadline, spent, interval, timeouts
):
    clock = FakeClock()

    def unavailable_after(method, request, timeout):
        clock.sleep(min(spent, timeout))
        raise failed_call(grpc.StatusCode.UNAVAILABLE, message='HMC unreachable')

    drv, channel = scripted_driver(unavailable_after, clock)
    CONF.set_override('read_deadline', deadline, group='dpm')
    CONF.set_override('retry_interval', interval, group='dpm')
    try:
        with pytest.raises(exception.VirtDriverNotReady):
            drv.list_instance_uuids()
    finally:
        CONF.clear_override('read_deadline', group='dpm')
        CONF.clear_override('retry_interval', group='dpm')
    assert [c[1] for c in channel.calls] == timeouts
    assert clock.now <= deadline


def test_a_retry_gets_only_what_is_left_of_the_deadline():
    clock = FakeClock()
    answers = iter([failed_call(grpc.StatusCode.UNAVAILABLE), pb.ListInstancesResponse()])

    def answer(method, request, timeout):
        clock.sleep(5)
        reply = next(answers)
        if isinstance(reply, Exception):
            raise reply
        return reply

    drv, channel = scripted_driver(answer, clock)
    CONF.set_override('retry_interval', 1, group='dpm')
    try:
        assert drv.list_instance_uuids() == []
    finally:
        CONF.clear_override('retry_interval', group='dpm')
    deadline = CONF.dpm.read_deadline
    assert [c[1] for c in channel.calls] == [deadline, deadline - 6]


# -- errors ----------------------------------------------------------------------


def test_a_host_that_failed_its_start_up_checks_makes_nova_reschedule():
    def not_ready(method, request, timeout):
        raise failed_call(grpc.StatusCode.FAILED_PRECONDITION, 'HOST_NOT_READY', 'no CPC')

    drv, _ = scripted_driver(not_ready)
    with pytest.raises(exception.ComputeResourcesUnavailable, match='no CPC'):
        drv.prepare_for_spawn(make_instance())


# -- transport: no bearer token in clear text off the host ---------------------


@pytest.fixture
def dpm_options():
    """Set [dpm] options for one test; a fake grpc records the channel it is asked for."""
    names = []

    def set_options(**options):
        for name, value in options.items():
            CONF.set_override(name, value, group='dpm')
            names.append(name)

    with (
        mock.patch.object(grpc, 'insecure_channel') as insecure,
        mock.patch.object(grpc, 'secure_channel') as secure,
        mock.patch.object(grpc, 'ssl_channel_credentials') as credentials,
    ):
        yield set_options, insecure, secure, credentials
    for name in names:
        CONF.clear_override(name, group='dpm')


LOOPBACK_TARGETS = [
    '127.0.0.1:50051',
    '127.9.9.9:50051',
    'localhost:50051',
    '[::1]:50051',
    '[::ffff:127.0.0.1]:50051',
    'ipv4:127.0.0.1:50051',
    'ipv4:127.0.0.1:50051,127.0.0.2:50052',
    'ipv6:[::1]:50051',
    'ipv6:::1',
    'dns:///localhost:50051',
    'dns:localhost:50051',
    'dns://127.0.0.53/localhost:50051',
]
REMOTE_TARGETS = [
    '10.1.2.3:50051',
    'backend.example.com:50051',
    'localhost.example.com:50051',
    '[2001:db8::1]:50051',
    'ipv4:10.1.2.3:50051',
    'ipv4:127.0.0.1:50051,10.1.2.3:50051',
    'ipv6:[2001:db8::1]:50051',
    'dns:///backend.example.com:50051',
    'dns://127.0.0.53/backend.example.com:50051',
    # Forms whose host this driver cannot judge are refused as well.
    'unix-abstract:dpm-backend',
    'xds:///dpm-backend',
]
TLS_OPTIONS = ('tls_ca_file', 'tls_cert_file', 'tls_key_file')
# Targets that name a set of backends: followed by health (round_robin), not pick_first.
FOLLOWED_BY_HEALTH = {
    'ipv4:127.0.0.1:50051,127.0.0.2:50052',
    'dns:///localhost:50051',
    'dns:localhost:50051',
    'dns://127.0.0.53/localhost:50051',
    'dns:///backend.example.com:50051',
}


def assert_channel_to(channel_mock, target, *credentials):
    """One channel to ``target``; with the failover service config exactly for a set of backends."""
    channel_mock.assert_called_once()
    assert channel_mock.call_args.args == (target, *credentials)
    options = dict(channel_mock.call_args.kwargs.get('options', ()))
    if target in FOLLOWED_BY_HEALTH:
        config = json.loads(options['grpc.service_config'])
        assert config['loadBalancingConfig'] == [{'round_robin': {}}]
        assert config['healthCheckConfig'] == {'serviceName': ''}
    else:
        assert channel_mock.call_args.kwargs == {}


def tls_files(tmp_path):
    files = {}
    for name in TLS_OPTIONS:
        path = tmp_path / f'{name}.pem'
        path.write_bytes(f'PEM of {name}'.encode())
        files[name] = str(path)
    return files


@pytest.mark.parametrize('target', ['unix:/run/dpm-backend/dpm.sock', 'unix:///run/dpm.sock'])
def test_unix_socket_targets_are_plaintext_without_any_flag(dpm_options, target):
    set_options, insecure, secure, _ = dpm_options
    set_options(backend=target)
    assert client_mod.open_channel(CONF.dpm) is insecure.return_value
    insecure.assert_called_once_with(target)
    secure.assert_not_called()


@pytest.mark.parametrize('target', LOOPBACK_TARGETS)
def test_plaintext_tcp_to_loopback_needs_allow_insecure_loopback(dpm_options, target):
    set_options, insecure, secure, _ = dpm_options
    set_options(backend=target)
    with pytest.raises(client_mod.DPMConfigError, match='allow_insecure_loopback = true'):
        client_mod.open_channel(CONF.dpm)
    insecure.assert_not_called()
    set_options(allow_insecure_loopback=True)
    assert client_mod.open_channel(CONF.dpm) is insecure.return_value
    assert_channel_to(insecure, target)
    secure.assert_not_called()


@pytest.mark.parametrize('flag', [False, True])
@pytest.mark.parametrize('target', REMOTE_TARGETS)
def test_plaintext_tcp_off_loopback_is_refused_whatever_the_flag(dpm_options, target, flag):
    set_options, insecure, secure, _ = dpm_options
    set_options(backend=target, allow_insecure_loopback=flag)
    with pytest.raises(client_mod.DPMConfigError) as caught:
        client_mod.open_channel(CONF.dpm)
    message = str(caught.value)
    for words in ('[dpm] backend', *TLS_OPTIONS, 'allow_insecure_loopback', target):
        assert words in message
    insecure.assert_not_called()
    secure.assert_not_called()


@pytest.mark.parametrize('target', ['10.1.2.3:50051', 'dns:///backend.example.com:50051'])
def test_tcp_with_the_tls_files_gets_a_verified_channel(dpm_options, tmp_path, target):
    set_options, insecure, secure, credentials = dpm_options
    files = tls_files(tmp_path)
    set_options(backend=target, **files)
    assert client_mod.open_channel(CONF.dpm) is secure.return_value
    credentials.assert_called_once_with(
        root_certificates=b'PEM of tls_ca_file',
        private_key=b'PEM of tls_key_file',
        certificate_chain=b'PEM of tls_cert_file',
    )
    assert_channel_to(secure, target, credentials.return_value)
    insecure.assert_not_called()


@pytest.mark.parametrize('given', [('tls_ca_file',), ('tls_cert_file', 'tls_key_file')])
def test_tls_files_go_together(dpm_options, tmp_path, given):
    set_options, insecure, secure, _ = dpm_options
    files = tls_files(tmp_path)
    set_options(
        backend='10.1.2.3:50051', allow_insecure_loopback=True, **{n: files[n] for n in given}
    )
    with pytest.raises(client_mod.DPMConfigError, match='go together'):
        client_mod.open_channel(CONF.dpm)
    insecure.assert_not_called()
    secure.assert_not_called()


def test_an_unreadable_tls_file_is_named(dpm_options, tmp_path):
    set_options, _, secure, _ = dpm_options
    files = tls_files(tmp_path)
    set_options(backend='10.1.2.3:50051', **{**files, 'tls_key_file': str(tmp_path / 'none')})
    with pytest.raises(client_mod.DPMConfigError, match=r'\[dpm\] tls_key_file: cannot read'):
        client_mod.open_channel(CONF.dpm)
    secure.assert_not_called()


def test_init_host_refuses_plaintext_tcp_before_anything_is_sent(dpm_options):
    set_options, insecure, secure, _ = dpm_options
    set_options(backend='10.1.2.3:50051')
    drv = driver_mod.DPMDriver(fake.FakeVirtAPI())
    with (
        mock.patch.object(client_mod, 'BackendClient') as backend_client,
        pytest.raises(client_mod.DPMBackendError, match=r'\[dpm\] backend'),
    ):
        drv.init_host(HOST)
    backend_client.assert_not_called()
    insecure.assert_not_called()
    secure.assert_not_called()


# -- several backends of one HMC: one channel, calls to the SERVING one ---------


@pytest.mark.parametrize(
    ('backend', 'target'),
    [
        ('10.0.0.11:50051,10.0.0.12:50051', 'ipv4:10.0.0.11:50051,10.0.0.12:50051'),
        (' 10.0.0.11:50051 , 10.0.0.12:50052 ', 'ipv4:10.0.0.11:50051,10.0.0.12:50052'),
        ('[fd00::11]:50051,[fd00::12]:50051', 'ipv6:[fd00::11]:50051,[fd00::12]:50051'),
        ('ipv4:10.0.0.11:50051,10.0.0.12:50051', 'ipv4:10.0.0.11:50051,10.0.0.12:50051'),
    ],
)
def test_several_backends_are_one_channel_following_their_health(
    dpm_options, tmp_path, backend, target
):
    set_options, insecure, secure, credentials = dpm_options
    set_options(backend=backend, tls_server_name='dpm-backend-hmc1.example.com')
    set_options(**tls_files(tmp_path))
    assert client_mod.open_channel(CONF.dpm) is secure.return_value
    assert secure.call_args.args == (target, credentials.return_value)
    options = dict(secure.call_args.kwargs['options'])
    # TLS checks the one name every backend's certificate carries.
    assert options['grpc.ssl_target_name_override'] == 'dpm-backend-hmc1.example.com'
    assert options['grpc.enable_retries'] == 1
    config = json.loads(options['grpc.service_config'])
    assert config['loadBalancingConfig'] == [{'round_robin': {}}]
    assert config['healthCheckConfig'] == {'serviceName': ''}
    assert config['retryThrottling'] == {'maxTokens': 10, 'tokenRatio': 1.0}
    # With its decimal point: grpc core reads "tokenRatio": 1 as 0.001.
    assert '"tokenRatio": 1.0' in options['grpc.service_config']
    (method_config,) = config['methodConfig']
    retried = {name['method'] for name in method_config['name']}
    assert {name['service'] for name in method_config['name']} == {SERVICE.full_name}
    # Every RPC the proto marks idempotent (Spawn converges) but Reboot, which
    # a second backend would repeat.
    assert retried == {method.name for method in SERVICE.methods} - {'Reboot'}
    policy = method_config['retryPolicy']
    assert policy['retryableStatusCodes'] == ['UNAVAILABLE']
    assert 2 <= policy['maxAttempts'] <= 5
    insecure.assert_not_called()


def test_one_address_with_tls_server_name_only_overrides_the_name(dpm_options, tmp_path):
    set_options, _, secure, credentials = dpm_options
    set_options(backend='10.0.0.11:50051', tls_server_name='dpm-hmc1', **tls_files(tmp_path))
    client_mod.open_channel(CONF.dpm)
    assert secure.call_args.args == ('10.0.0.11:50051', credentials.return_value)
    assert secure.call_args.kwargs == {'options': [('grpc.ssl_target_name_override', 'dpm-hmc1')]}


def test_several_backends_over_tls_need_the_name_their_certificates_share(dpm_options, tmp_path):
    set_options, insecure, secure, credentials = dpm_options
    set_options(backend='10.0.0.11:50051,10.0.0.12:50051', **tls_files(tmp_path))
    with pytest.raises(client_mod.DPMConfigError, match=r'set \[dpm\] tls_server_name'):
        client_mod.open_channel(CONF.dpm)
    secure.assert_not_called()
    credentials.assert_not_called()
    # A DNS name is the name checked, as for one backend.
    set_options(backend='dns:///dpm-backend-hmc1.example.com:50051')
    client_mod.open_channel(CONF.dpm)
    options = dict(secure.call_args.kwargs['options'])
    assert 'grpc.ssl_target_name_override' not in options
    assert 'grpc.service_config' in options
    insecure.assert_not_called()


def test_several_loopback_backends_in_plaintext_follow_health_too(dpm_options):
    set_options, insecure, secure, _ = dpm_options
    set_options(backend='127.0.0.1:50051,127.0.0.1:50052', allow_insecure_loopback=True)
    client_mod.open_channel(CONF.dpm)
    assert insecure.call_args.args == ('ipv4:127.0.0.1:50051,127.0.0.1:50052',)
    options = dict(insecure.call_args.kwargs['options'])
    assert 'grpc.service_config' in options and 'grpc.ssl_target_name_override' not in options
    set_options(backend='127.0.0.1:50051,10.0.0.12:50052')
    with pytest.raises(client_mod.DPMConfigError, match='clear text'):
        client_mod.open_channel(CONF.dpm)
    secure.assert_not_called()


@pytest.mark.parametrize(
    ('backend', 'words'),
    [
        ('unix:/run/a.sock,unix:/run/b.sock', 'several backends need TCP addresses'),
        ('unix:/run/a.sock,10.0.0.12:50051', 'several backends need TCP addresses'),
        ('10.0.0.11:50051,unix:/run/b.sock', 'several backends need TCP addresses'),
        ('dpm-a.example.com:50051,dpm-b.example.com:50051', "'dpm-a.example.com:50051' is not"),
        ('10.0.0.11,10.0.0.12', "'10.0.0.11' is not"),
        ('10.0.0.11:50051,', "'' is not"),
        ('10.0.0.11:50051,10.0.0.12:70000', "'10.0.0.12:70000' is not"),
        ('10.0.0.11:50051,fd00::12:50051', "'fd00::12:50051' is not"),
        ('[10.0.0.11]:50051,10.0.0.12:50051', "'[10.0.0.11]:50051' is not"),
        ('10.0.0.11:50051,[fd00::12]:50051', 'mixes IPv4 and IPv6'),
        ('10.0.0.11:50051,10.0.0.11:50051', 'names an address twice'),
    ],
)
def test_a_list_grpc_cannot_follow_as_one_channel_is_refused_naming_the_option(
    dpm_options, tmp_path, backend, words
):
    set_options, insecure, secure, _ = dpm_options
    set_options(backend=backend, tls_server_name='dpm-hmc1', **tls_files(tmp_path))
    with pytest.raises(client_mod.DPMConfigError) as caught:
        client_mod.open_channel(CONF.dpm)
    message = str(caught.value)
    assert f'[dpm] backend = {backend}' in message and words in message
    assert '\n' not in message
    insecure.assert_not_called()
    secure.assert_not_called()


@pytest.mark.parametrize(
    ('reason', 'retried'), [('BACKEND_STANDBY', True), ('HMC_UNAVAILABLE', False), ('', False)]
)
def test_a_reboot_is_retried_only_when_a_standby_backend_refused_it(reason, retried):
    """A standby refuses before it begins anything; any other UNAVAILABLE may come after."""
    calls = []

    def answer(method, request, timeout):
        calls.append(method)
        if len(calls) == 1:
            raise failed_call(grpc.StatusCode.UNAVAILABLE, reason)
        return pb.RebootResponse()

    drv, _ = scripted_driver(answer)
    if retried:
        drv.reboot(None, make_instance(), [], 'HARD')
    else:
        with pytest.raises(exception.VirtDriverNotReady):
            drv.reboot(None, make_instance(), [], 'HARD')
    assert calls == (['Reboot', 'Reboot'] if retried else ['Reboot'])


# -- volumes -------------------------------------------------------------------


VOLUME_ID = '3f0a9c2e-6b1d-4e8f-9a7c-5d2e1b0c4f6a'
FC_VOLUME = {
    'driver_volume_type': 'fibre_channel',
    'serial': VOLUME_ID,
    'data': {'target_lun': 1, 'target_wwn': ['500507680b2142e5']},
}


SEEN: list = []


def partition_gone(method, request, timeout):
    SEEN.append((method, request))
    if method == 'DetachVolume':
        return pb.DetachVolumeResponse(existed=False)  # the backend finds nothing to remove
    raise failed_call(grpc.StatusCode.NOT_FOUND, 'INSTANCE_NOT_FOUND', 'no partition')


def test_detach_volume_succeeds_when_the_partition_is_gone():
    drv, _channel = scripted_driver(partition_gone)
    instance = make_instance(wwpns=WWPNS)
    SEEN.clear()
    assert drv.detach_volume(None, FC_VOLUME, instance, '/dev/sdb') is None
    ((method, request),) = SEEN
    assert (method, request.volume_id) == ('DetachVolume', VOLUME_ID)
    # Attaching needs the partition: the backend's NOT_FOUND is Nova's InstanceNotFound.
    with pytest.raises(exception.InstanceNotFound):
        drv.attach_volume(None, FC_VOLUME, instance, '/dev/sdb')
    method, request = SEEN[-1]
    assert method == 'AttachVolume' and request.volume.volume_id == VOLUME_ID
    assert [w.initiator_wwpn for w in request.volume.initiator_target_map] == WWPNS


def test_volumes_other_than_fibre_channel_are_refused_without_a_call():
    drv, channel = scripted_driver(partition_gone)
    iscsi = {'driver_volume_type': 'iscsi', 'data': {}}
    with pytest.raises(exception.VolumeDriverNotFound):
        drv.attach_volume(None, iscsi, make_instance(), '/dev/sdb')
    with pytest.raises(exception.VolumeDriverNotFound):
        drv.detach_volume(None, iscsi, make_instance(), '/dev/sdb')
    assert channel.calls == []


# -- power states -------------------------------------------------------------


def test_an_unknown_power_state_is_nostate_with_a_warning(caplog):
    reply = pb.InstanceInfo(instance_uuid='u1', power_state=7, partition_status='new-status')
    with caplog.at_level('WARNING', logger='dpm_frontend.translate'):
        assert translate.power_state_of(reply) == power_state.NOSTATE
    (record,) = [r for r in caplog.records if r.name == 'dpm_frontend.translate']
    assert record.levelname == 'WARNING'
    assert '7' in record.getMessage() and 'new-status' in record.getMessage()
    caplog.clear()
    with caplog.at_level('WARNING', logger='dpm_frontend.translate'):
        assert translate.power_state_of(info(make_instance())) == power_state.RUNNING
        assert translate.power_state_of(pb.InstanceInfo()) == power_state.NOSTATE
    assert caplog.records == []


# -- request ids: Nova's sent with each call, the backend's named in failures --

REQUEST_ID_KEY = 'x-openstack-request-id'
BACKEND_REQUEST_ID = 'req-0f1e2d3c-4b5a-4968-8776-655443322110'


def sent_request_ids(recorder) -> list:
    return [dict(metadata).get(REQUEST_ID_KEY) for _, _, metadata in recorder.calls]


def test_each_call_carries_the_request_id_of_novas_current_context(harness):
    drv, backend, recorder, pool = harness
    instance = make_instance()

    def operation():
        # Nova makes a RequestContext current for each operation it handles.
        context = nova_context.RequestContext('user', 'project', is_admin=False)
        drv.get_info(instance)
        return context.request_id

    future = pool.submit(operation)
    backend.answer('GetInstanceInfo', pb.GetInstanceInfoResponse(info=info(instance)))
    request_id = future.result(5)
    assert request_id.startswith('req-')
    assert sent_request_ids(recorder) == [request_id]
    assert ('authorization', 'Bearer s3cr3t-token') in recorder.calls[0][2]


def test_the_context_nova_passes_wins_and_every_retry_carries_it(harness):
    drv, backend, recorder, pool = harness
    instance = make_instance()

    def operation():
        current = nova_context.RequestContext('user', 'project', is_admin=False)
        passed = nova_context.get_admin_context()  # as for a periodic task: not current
        drv.power_on(passed, instance, None)
        return current.request_id, passed.request_id

    future = pool.submit(operation)
    backend.answer('PowerOn', error=unavailable())
    backend.answer('PowerOn', pb.PowerOnResponse())
    current, passed = future.result(5)
    assert current != passed
    assert sent_request_ids(recorder) == [passed, passed]


def test_no_request_id_is_sent_without_a_context_or_a_well_formed_one(harness):
    drv, backend, recorder, _ = harness

    def operation(request_id):
        if request_id is not None:
            nova_context.RequestContext(is_admin=False, request_id=request_id)
        else:
            assert oslo_context.get_current() is None
        return drv.list_instance_uuids()

    hostile = [
        None,
        BACKEND_REQUEST_ID + '\r\nx-forged: 1',
        '\x1b[31m' + BACKEND_REQUEST_ID,
        'req-' + 'a' * 100,
        BACKEND_REQUEST_ID.upper(),
    ]
    for request_id in hostile:
        # A fresh thread each: no context left current by the one before.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as fresh:
            future = fresh.submit(operation, request_id)
            backend.answer('ListInstances', pb.ListInstancesResponse())
            assert future.result(5) == []
    assert sent_request_ids(recorder) == [None] * len(hostile)
    # The call itself goes out, token and all.
    assert all(('authorization', 'Bearer s3cr3t-token') in m for _, _, m in recorder.calls)


def test_a_failure_names_the_request_id_the_backend_logged_it_under(caplog):
    def refused(method, request, timeout):
        with correlation.bound(BACKEND_REQUEST_ID):
            raise FailedCall(errors.capacity_exceeded(HOST, 'only 1 IFL left').to_status())

    drv, _ = scripted_driver(refused)
    with (
        caplog.at_level('DEBUG', logger='dpm_frontend.client'),
        pytest.raises(exception.ComputeResourcesUnavailable) as caught,
    ):
        drv.prepare_for_spawn(make_instance())
    assert f'only 1 IFL left (backend request {BACKEND_REQUEST_ID})' in str(caught.value)
    (record,) = [r for r in caplog.records if r.name == 'dpm_frontend.client']
    assert BACKEND_REQUEST_ID in record.getMessage()


def test_the_request_id_in_the_trailers_is_named_and_a_malformed_one_is_not():
    def unavailable_with(request_id):
        status = types.SimpleNamespace(
            code=grpc.StatusCode.UNAVAILABLE,
            details='the backend is stopping',
            trailing_metadata=((REQUEST_ID_KEY, request_id),),
        )
        return FailedCall(status)

    for request_id, named in (
        (BACKEND_REQUEST_ID, True),
        (BACKEND_REQUEST_ID + ' [forged]', False),
        ('req-%(details)s', False),
    ):
        failure = client_mod.BackendFailure(unavailable_with(request_id))
        assert failure.request_id == (BACKEND_REQUEST_ID if named else None)
        assert ('(backend request' in failure.message) is named
        assert 'forged' not in failure.message and '%(' not in failure.message


def test_the_request_id_of_a_context_is_taken_only_in_novas_form():
    good = types.SimpleNamespace(request_id=BACKEND_REQUEST_ID)
    assert client_mod.request_id_of(good) == BACKEND_REQUEST_ID
    for bad in ('', 'req-1', BACKEND_REQUEST_ID + '\n', 'a' * 64, 42, None):
        assert client_mod.request_id_of(types.SimpleNamespace(request_id=bad)) is None
    assert client_mod.request_id_of(object()) is None


# -- moving instances: resize, cold migration, evacuate -----------------------

OTHER = 'cpc2'
OTHER_WWPNS = ['c05076ffe5000101', 'c05076ffe5000102']


class FakeBackend:
    """Answers as the backend would for an instance whose partition on HOST is ``present``."""

    def __init__(self, present: bool = True):
        self.present = present
        self.calls: list[tuple[str, object]] = []

    def __call__(self, method, request, timeout):
        self.calls.append((method, request))
        if method == 'PrepareInstance':
            self.present = True
            return pb.PrepareInstanceResponse(wwpns=WWPNS)
        if method == 'Destroy':
            existed, self.present = self.present, False
            return pb.DestroyResponse(existed=existed)
        if method == 'Spawn':  # creates the partition when it is gone
            self.present = True
            return pb.SpawnResponse()
        if not self.present:
            raise failed_call(grpc.StatusCode.NOT_FOUND, 'INSTANCE_NOT_FOUND', 'no partition')
        replies = {
            'GetVolumeConnector': pb.GetVolumeConnectorResponse(wwpns=WWPNS),
            'Spawn': pb.SpawnResponse(),
            'PowerOff': pb.PowerOffResponse(),
        }
        return replies[method]

    @property
    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    def request(self, method: str):
        (request,) = [r for m, r in self.calls if m == method]
        return request


def moving_instance(task_state, **flavor):
    """An instance whose WWPNs on OTHER (the other end of a move) are stored."""
    instance = make_instance(task_state=task_state, **flavor)
    instance.system_metadata[translate.wwpns_key(OTHER)] = ','.join(OTHER_WWPNS)
    return instance


def fc_bdi(wwpns=WWPNS):
    return bdi({'target_lun': 3, 'initiator_target_map': {w: [TARGET] for w in wwpns}})


@pytest.mark.parametrize(
    'task_state',
    [
        task_states.RESIZE_FINISH,
        task_states.REBUILDING,
        task_states.REBUILD_BLOCK_DEVICE_MAPPING,
        task_states.REBUILD_SPAWNING,
    ],
)
def test_the_connector_of_a_destination_prepares_its_partition_with_the_flavor_of_now(task_state):
    """Nova asks a destination for its connector before the call that builds the partition."""
    backend = FakeBackend(present=False)
    drv, _ = scripted_driver(backend)
    instance = moving_instance(task_state, vcpus=4, mem=4096)
    with mock.patch.object(objects.Instance, 'save') as save:
        connector = drv.get_volume_connector(instance)
    assert connector == {'wwpns': WWPNS, 'host': instance.uuid}
    request = backend.request('PrepareInstance')
    assert (request.host, request.flavor.vcpus, request.flavor.memory_mb) == (HOST, 4, 4096)
    # Stored for this host; the other end's WWPNs are its own.
    assert instance.system_metadata[KEY] == ','.join(WWPNS)
    assert instance.system_metadata[translate.wwpns_key(OTHER)] == ','.join(OTHER_WWPNS)
    save.assert_called_once_with()


@pytest.mark.parametrize(
    'task_state',
    [None, task_states.DELETING, task_states.RESIZE_REVERTING, task_states.RESIZE_MIGRATING],
)
def test_the_connector_never_creates_a_partition_outside_a_move_here(task_state):
    """After a destroy with nothing stored (the partition is gone) the connector fails."""
    backend = FakeBackend(present=False)
    drv, _ = scripted_driver(backend)
    instance = moving_instance(task_state)
    with pytest.raises(exception.InstanceNotFound):
        drv.get_volume_connector(instance)
    assert backend.methods == ['GetVolumeConnector']
    # Another host's WWPNs are never answered for this one.
    backend.present = True
    with mock.patch.object(objects.Instance, 'save'):
        assert drv.get_volume_connector(instance)['wwpns'] == WWPNS


def test_two_drivers_in_one_process_keep_the_host_and_backend_they_were_started_for(tmp_path):
    """Nova's functional tests start a compute service per host in one process."""
    drivers = {}
    for host in (HOST, OTHER):
        token = tmp_path / host
        token.write_text(f'token-of-{host}')
        CONF.set_override('host', host)
        CONF.set_override('backend', f'unix:{tmp_path / host}.sock', group='dpm')
        CONF.set_override('token_file', str(token), group='dpm')
        drivers[host] = driver_mod.DPMDriver(fake.FakeVirtAPI())
    for name in ('backend', 'token_file'):
        CONF.clear_override(name, group='dpm')
    CONF.clear_override('host')
    for host, drv in drivers.items():
        assert drv.get_available_nodes() == [host]
        with mock.patch.object(client_mod.grpc, 'insecure_channel') as channel:
            client = drv.client
        channel.assert_called_once_with(f'unix:{tmp_path / host}.sock')
        assert ('authorization', f'Bearer token-of-{host}') in client._metadata
        drv.cleanup_host(host)


def test_an_evacuation_spawn_has_the_backend_stop_the_source_partition_first():
    for task_state, fence in ((task_states.REBUILD_SPAWNING, True), (task_states.SPAWNING, False)):
        backend = FakeBackend()
        drv, _ = scripted_driver(backend)
        instance = make_instance(wwpns=WWPNS, task_state=task_state)
        drv.spawn(None, instance, None, [], None, {}, network_model.NetworkInfo([vif()]), fc_bdi())
        assert backend.methods == ['Spawn']
        assert backend.request('Spawn').stop_other_hosts_partitions is fence


def test_the_source_of_a_move_is_stopped_and_a_resize_on_its_own_host_refused():
    backend = FakeBackend()
    drv, _ = scripted_driver(backend)
    instance = make_instance(wwpns=WWPNS, task_state=task_states.RESIZE_MIGRATING)
    instance.migration_context = objects.MigrationContext(migration_id=7)
    flavor = objects.Flavor(vcpus=4, memory_mb=4096)
    with mock.patch.object(objects.Migration, 'get_by_id') as get:
        get.return_value = objects.Migration(source_compute=HOST, dest_compute=HOST)
        with pytest.raises(exception.InstanceFaultRollback) as caught:
            drv.migrate_disk_and_power_off(None, instance, '192.0.2.1', flavor, [])
        assert isinstance(caught.value.inner_exception, exception.ResizeError)
        assert f'own host ({HOST})' in str(caught.value.inner_exception)
        assert backend.calls == []
        get.return_value = objects.Migration(source_compute=HOST, dest_compute=OTHER)
        assert drv.migrate_disk_and_power_off(None, instance, '192.0.2.1', flavor, []) == ''
    get.assert_called_with(None, 7)
    assert backend.methods == ['PowerOff']


@pytest.mark.parametrize('power_on', [True, False])
def test_finish_migration_prepares_with_the_new_flavor_and_spawns_without_waiting(power_on):
    backend = FakeBackend(present=False)
    drv, _ = scripted_driver(backend)
    instance = moving_instance(task_states.RESIZE_FINISH, vcpus=4, mem=4096)
    # Ports Neutron shows down with vif_plugging_timeout set: no wait on a move.
    vifs = network_model.NetworkInfo([vif(active=False)])
    CONF.set_override('vif_plugging_timeout', 300)
    try:
        with mock.patch.object(objects.Instance, 'save'):
            drv.finish_migration(None, None, instance, '', vifs, None, True, {}, fc_bdi(), power_on)
    finally:
        CONF.clear_override('vif_plugging_timeout')
    assert backend.methods == ['PrepareInstance', 'Spawn']
    spawn = backend.request('Spawn')
    assert (spawn.flavor.vcpus, spawn.flavor.memory_mb) == (4, 4096)
    assert spawn.leave_stopped is not power_on
    assert spawn.stop_other_hosts_partitions is False
    assert [m.initiator_wwpn for m in spawn.boot_volume.initiator_target_map] == WWPNS


def test_confirm_destroys_the_source_partition_and_forgets_its_wwpns():
    backend = FakeBackend()
    drv, _ = scripted_driver(backend)
    instance = moving_instance(None)
    instance.system_metadata[KEY] = ','.join(WWPNS)
    with mock.patch.object(objects.Instance, 'save') as save:
        drv.confirm_migration(None, None, instance, [])
        assert backend.methods == ['Destroy']
        # Not asked to read the WWPNs it deletes: nothing asks for them again.
        assert backend.request('Destroy').wwpns_known is True
        assert KEY not in instance.system_metadata
        assert instance.system_metadata[translate.wwpns_key(OTHER)] == ','.join(OTHER_WWPNS)
        save.assert_called_once_with()
        # A retried confirm: nothing left, nothing stored.
        drv.confirm_migration(None, None, instance, [])
        save.assert_called_once_with()


def test_revert_spawns_the_source_partition_again_and_forgets_the_destinations_wwpns():
    backend = FakeBackend()
    drv, _ = scripted_driver(backend)
    instance = moving_instance(task_states.RESIZE_REVERTING)
    instance.system_metadata[KEY] = ','.join(WWPNS)
    migration = objects.Migration(source_compute=HOST, dest_compute=OTHER)
    with mock.patch.object(objects.Instance, 'save') as save:
        drv.finish_revert_migration(
            None, instance, network_model.NetworkInfo([vif()]), migration, fc_bdi(), True
        )
    assert backend.methods == ['Spawn']
    spawn = backend.request('Spawn')
    assert (spawn.leave_stopped, spawn.stop_other_hosts_partitions) == (False, False)
    assert (spawn.flavor.vcpus, spawn.flavor.memory_mb) == (2, 2048)
    assert dict(instance.system_metadata) == {KEY: ','.join(WWPNS)}
    save.assert_called_once_with()


def test_destroy_of_what_an_evacuation_left_here_forgets_this_hosts_wwpns():
    backend = FakeBackend()
    drv, _ = scripted_driver(backend)
    instance = moving_instance(None)
    instance.host = OTHER  # evacuated there
    instance.system_metadata[KEY] = ','.join(WWPNS)
    with mock.patch.object(objects.Instance, 'save'):
        drv.destroy(None, instance, [])
    assert backend.request('Destroy').wwpns_known is True
    assert KEY not in instance.system_metadata
    # An instance of this host keeps them: Nova asks for the connector after destroy.
    backend = FakeBackend()
    drv, _ = scripted_driver(backend)
    instance = make_instance(wwpns=WWPNS)
    drv.destroy(None, instance, [])
    assert instance.system_metadata[KEY] == ','.join(WWPNS)


def test_a_hard_reboot_of_an_instance_in_error_reconfigures_its_partition():
    backend = FakeBackend()
    drv, _ = scripted_driver(backend)
    instance = make_instance(wwpns=WWPNS)
    instance.vm_state = vm_states.ERROR
    drv.reboot(None, instance, network_model.NetworkInfo([vif()]), 'HARD', fc_bdi())
    assert backend.methods == ['PowerOff', 'Spawn']
    spawn = backend.request('Spawn')
    assert (spawn.leave_stopped, spawn.stop_other_hosts_partitions) == (False, True)
    assert [n.mac for n in spawn.nics] == ['fa:16:3e:00:00:01']
    assert spawn.boot_volume.target_lun == 3


def test_a_hard_reboot_in_error_creates_a_partition_a_failed_destroy_took():
    backend = FakeBackend(present=False)
    drv, _ = scripted_driver(backend)
    instance = make_instance(wwpns=WWPNS)
    instance.vm_state = vm_states.ERROR
    drv.reboot(None, instance, network_model.NetworkInfo([vif()]), 'HARD', fc_bdi())
    assert backend.methods == ['PowerOff', 'Spawn']
    assert backend.present
