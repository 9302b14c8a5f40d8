"""Nova's functional harness around a backend on the HMC simulator (one host, "compute").

Nova's in-process functional harness runs every service for real; only Neutron,
Cinder and Glance are Nova's own fixtures. The compute service loads
``compute_driver = dpm.DPMDriver`` through the installed nova/virt/dpm shim and
talks to a real dpm-backend over a unix socket, which talks to the HMC
simulator over HTTPS through a real zhmcclient Session.
"""

from __future__ import annotations

import copy
import os
import pathlib
import shutil
import sys
import tempfile

from dpmtest import DEFAULT_PROFILE
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import RequestLog
from dpmtest import load_config
from dpmtest import pristine
from dpmtest import simulator
from dpmtest import write_config
from fc_cinder import VOLUME
from fc_cinder import storage_of_a_boot_from_volume_cloud
from nova.tests.functional import integrated_helpers

from dpm_backend.server import Backend

HOST = 'compute'


def other_partitions(served, mine: str) -> dict:
    cpc = served.sim.hmc.cpcs.lookup_by_oid(INVENTORY['z13'])
    return {
        p.properties['name']: copy.deepcopy(dict(p.properties))
        for p in cpc.partitions.list()
        if p.properties['name'] != mine
    }


class _DPMTestBase(integrated_helpers._IntegratedTestBase):
    """A backend on the HMC simulator serving host "compute", and Nova around it."""

    microversion = 'latest'
    ADMIN_API = True
    # The HMC version the simulator answers as.
    PROFILE = DEFAULT_PROFILE
    # The host's CPC and the FCP adapters of its storage mappings (INVENTORY keys).
    CPC = 'z13'
    ADAPTERS = 'fcp'
    # Whether the simulator publishes the HMC's notifications (its STOMP broker).
    NOTIFICATIONS = False

    def setUp(self):
        self.served = simulator(self.PROFILE, notifications=self.NOTIFICATIONS)
        pristine(self.served)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-nova-'))
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        socket_path = workdir / 'b.sock'
        hosts = [
            HostSpec(
                HOST,
                INVENTORY[self.CPC],
                max_processors=8,
                max_memory=16384,
                mappings=tuple(f'{a}:0' for a in INVENTORY[self.ADAPTERS]),
            )
        ]
        self.config_file = write_config(workdir / 'b.conf', socket_path, hosts, hmc=self.served)
        config = load_config(self.config_file)
        self.socket_path = socket_path
        self.start_backend(config)
        self.flags(compute_driver='dpm.DPMDriver')
        self.flags(backend=f'unix:{socket_path}', retry_interval=0.1, group='dpm')
        self.flags(
            api_paste_config=os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
            group='wsgi',
        )
        self.before_nova()
        super().setUp()
        self.cinder = storage_of_a_boot_from_volume_cloud(self)
        self.flavor = self.admin_api.post_flavor(
            {'flavor': {'name': 'dpm.small', 'ram': 2048, 'vcpus': 2, 'disk': 0}}
        )['id']

    def start_backend(self, config) -> None:
        """The backend, in this process (its HMC requests in ``hmc_log``)."""
        self.hmc_log = RequestLog()
        self.backend = Backend(config, interceptors=[self.hmc_log])
        self.backend.start()
        self.addCleanup(self.backend.stop, 1)

    def before_nova(self) -> None:
        """What a test needs before Nova's fixtures (wsgi_intercept, which breaks
        new HTTPS connections of zhmcclient) are in place."""

    def hmc_partitions(self) -> dict:
        cpc = self.served.sim.hmc.cpcs.lookup_by_oid(INVENTORY[self.CPC])
        return {p.properties['name']: p for p in cpc.partitions.list()}

    def storage_groups(self) -> dict:
        console = self.served.sim.hmc.consoles.lookup_by_oid(None)
        return {g.properties['name']: g for g in console.storage_groups.list()}

    def hmc_objects(self) -> dict:
        """The names of the partitions on the host's CPC and of the HMC's storage groups."""
        return {
            'partitions': set(self.hmc_partitions()),
            'storage_groups': set(self.storage_groups()),
        }

    def dpm_port(self, mac: str, vswitch: str, status: str = 'ACTIVE') -> str:
        port = self.neutron.create_port({'port': {'network_id': self.neutron.network_1['id']}})[
            'port'
        ]
        stored = self.neutron._ports[port['id']]
        stored.update(
            {
                'mac_address': mac,
                'status': status,
                'binding:vif_type': 'dpm_vswitch',
                'binding:vif_details': {'object_id': vswitch},
            }
        )
        return port['id']

    def server_body(self, ports, flavor=None, image=None) -> dict:
        server = {
            'name': 'dpm-server',
            'flavorRef': flavor or self.flavor,
            'networks': [{'port': port} for port in ports] if ports else 'none',
        }
        if image:
            server['imageRef'] = image
        else:
            server['imageRef'] = ''
            server['block_device_mapping_v2'] = [
                {
                    'boot_index': 0,
                    'uuid': VOLUME,
                    'source_type': 'volume',
                    'destination_type': 'volume',
                }
            ]
        return server
