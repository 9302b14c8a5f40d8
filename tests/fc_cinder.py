"""Nova's Cinder fixture with fibre channel volumes, for the functional tests.

FCCinderFixture maps each volume to the initiators of the connector an
attachment was given (as an FC driver's initiator_target_map does), so a test
can tell which initiators a volume connection is for.
"""

from __future__ import annotations

import copy

from nova.tests import fixtures as nova_fixtures

VOLUME = '9a1f5b3c-2d4e-4f60-8a7b-1c2d3e4f5a6b'
DATA_VOLUME = '4d2c6e1a-8b3f-4a5e-9c70-2e3f4a5b6c7d'
IMAGE = 'c0ffee00-5390-4d00-8000-000000000390'
TARGET = '500507680B2142E5'
LUN = 3
DATA_LUN = 7
# The FC volumes Cinder has: LUN on TARGET and size in GiB.
FC_VOLUMES = {VOLUME: (LUN, 20), DATA_VOLUME: (DATA_LUN, 5)}


class FCCinderFixture(nova_fixtures.CinderFixture):
    """Cinder with a bootable FC volume and a data one, mapped like an FC driver maps them.

    ``deleted`` records every attachment Cinder is asked to delete: the volume,
    the connector the attachment holds (what Cinder unmaps), and what the HMC
    held at that moment (the test's ``hmc_objects``).
    """

    def __init__(self, test, az='nova'):
        super().__init__(test, az)
        self.deleted: list[tuple[str, dict | None, dict]] = []

    def fake_get(self, context, volume_id, microversion=None):
        volume = super().fake_get(context, volume_id, microversion)
        if volume_id in FC_VOLUMES:
            volume['size'] = FC_VOLUMES[volume_id][1]
        if volume_id == VOLUME:
            volume['bootable'] = True
            volume['volume_image_metadata'] = {'image_id': IMAGE, 'hw_architecture': 's390x'}
        return volume

    def _find_connection_info(self, volume_id, attachment_id):
        if volume_id not in FC_VOLUMES:
            return super()._find_connection_info(volume_id, attachment_id)
        connector = self.volume_to_attachment[volume_id][attachment_id]['connector'] or {}
        return {
            'driver_volume_type': 'fibre_channel',
            'data': {
                'volume_id': volume_id,
                'attachment_id': attachment_id,
                'target_discovered': False,
                'target_lun': FC_VOLUMES[volume_id][0],
                'target_wwn': [TARGET],
                'initiator_target_map': {w: [TARGET] for w in connector.get('wwpns', [])},
            },
        }

    def fake_attachment_delete(self, context, attachment_id):
        volume_id, attachment, _ = self._find_attachment(attachment_id)
        held = self.test.hmc_objects()
        self.deleted.append((volume_id, copy.deepcopy(attachment.get('connector')), held))
        super().fake_attachment_delete(context, attachment_id)


def storage_of_a_boot_from_volume_cloud(test) -> FCCinderFixture:
    """After Nova's own setUp: Cinder with the FC volumes, and the image they were made from."""
    cinder = test.useFixture(FCCinderFixture(test))
    test.glance.create(
        None,
        {
            'id': IMAGE,
            'name': 'rhel-s390x',
            'status': 'active',
            'disk_format': 'raw',
            'container_format': 'bare',
            'properties': {'hw_architecture': 's390x'},
        },
    )
    return cinder
