"""The README's nova.conf block, pasted into a file, gives nova the values it shows."""

from __future__ import annotations

import re
from pathlib import Path

from nova.conf import CONF as NOVA_CONF
from oslo_config import cfg

from dpm_frontend import conf as dpm_conf

REPO = Path(__file__).resolve().parents[2]


def test_the_nova_conf_block_parses_to_plain_values(tmp_path):
    readme = (REPO / 'README.md').read_text()
    section = readme.split('## The Nova driver on compute nodes', 1)[1]
    block = re.findall(r'```ini\n(.*?)```', section, re.S)[0]
    path = tmp_path / 'nova.conf'
    path.write_text(block)
    conf = cfg.ConfigOpts()
    conf.register_opts(
        [
            NOVA_CONF._opts['host']['opt'],
            NOVA_CONF._opts['compute_driver']['opt'],
            NOVA_CONF._opts['concurrency_backend']['opt'],
        ]
    )
    dpm_conf.register_opts(conf)
    conf(['--config-file', str(path)], project='nova')
    assert (conf.host, conf.compute_driver, conf.concurrency_backend) == (
        'cpc1',
        'dpm.DPMDriver',
        'threading',
    )
    assert conf.dpm.backend == 'unix:/run/dpm-backend/hmc1/dpm-backend.sock'
