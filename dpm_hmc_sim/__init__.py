"""An HMC simulator that stands where a real HMC stands.

It serves zhmcclient's own mock HMC (a FakedHmc loaded from an HMC definition)
over HTTPS on loopback, with the rules of real HMC versions that the mock lacks:
version-dependent query parameters, asynchronous Start/Stop Partition jobs,
sessions that expire, and more (profiles.py, rules.py). A real
``zhmcclient.Session(host, userid, password, port=..., verify_cert=<CA file>)``
works against it unchanged.

In a test::

    from dpm_hmc_sim.testing import served

    with served('2.15.0', password='pw', cert_dir=tmp_path) as hmc:
        client = zhmcclient.Client(hmc.session())
        hmc.sim.set_outcome('LINUX01', 'start', 'paused')

Storage groups (z14 and later) behave as storage.py and rules.py describe;
discovery finds the LUNs of a simulated SAN, open by default (every LUN
exists), or closed with the LUNs a test lists (fabric.py)::

    hmc.sim.set_fabric({'open': False})
    hmc.sim.expose_lun(target_wwpn, '0001000000000000', size=10, host_wwpns=[...])

HMC notifications (notifications.py) travel, as on an HMC, through a STOMP broker
with TLS (broker.py) to a real ``zhmcclient.NotificationReceiver``::

    with served('2.15.0', password='pw', cert_dir=tmp_path, notifications=True) as hmc:
        receiver = hmc.receiver([session.object_topic, session.job_topic])

As a process: ``dpm-hmc-sim --definition 2.15.0 --listen 127.0.0.1:0 --userid
openstack --password-file FILE --cert-dir DIR [--stomp-listen 127.0.0.1:61612]``
(or ``python -m dpm_hmc_sim``); ``testing.SimulatorProcess`` runs it and speaks its
``/_sim/`` admin paths.
"""

from dpm_hmc_sim.core import Reply
from dpm_hmc_sim.core import RequestRecord
from dpm_hmc_sim.core import Settings
from dpm_hmc_sim.core import Simulator
from dpm_hmc_sim.definition import DefinitionError

__all__ = ['DefinitionError', 'Reply', 'RequestRecord', 'Settings', 'Simulator']
