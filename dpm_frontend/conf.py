"""nova.conf ``[dpm]`` options of the DPM compute driver.

The driver holds no HMC credentials: it only knows where the dpm-backend that
serves this Nova host listens. The Nova host identity is ``[DEFAULT]host``.
"""

from __future__ import annotations

from oslo_config import cfg

dpm_group = cfg.OptGroup(
    'dpm',
    title='DPM compute driver',
    help='The IBM Z / LinuxONE DPM driver talks to a dpm-backend (one per HMC) '
    'over gRPC. Set [DEFAULT]compute_driver = dpm.DPMDriver; the Nova host '
    '([DEFAULT]host) must be one of the hosts the backend serves.',
)

dpm_opts = [
    cfg.StrOpt(
        'backend',
        default='unix:/run/dpm-backend/dpm-backend.sock',
        help='The dpm-backend: "unix:<path>" or "<host>:<port>". A TCP target '
        'other than loopback needs tls_ca_file, tls_cert_file and tls_key_file. '
        'Related options: tls_*, token_file.',
    ),
    cfg.StrOpt('tls_ca_file', help='CA that signed the backend certificate (TCP only).'),
    cfg.StrOpt('tls_cert_file', help='Client certificate presented to the backend.'),
    cfg.StrOpt('tls_key_file', help='Private key of the client certificate.'),
    cfg.StrOpt(
        'token_file',
        help='File holding the token that binds this Nova host to the backend; '
        'sent as "authorization: Bearer <token>" metadata. Optional.',
    ),
    cfg.IntOpt(
        'read_deadline',
        default=30,
        min=1,
        max=600,
        help='Seconds for calls that only read (status, lists, info, connector).',
    ),
    cfg.IntOpt(
        'prepare_deadline',
        default=300,
        min=1,
        max=3600,
        help='Seconds for creating the partition and its vHBAs.',
    ),
    cfg.IntOpt(
        'spawn_deadline',
        default=900,
        min=1,
        max=3600,
        help='Seconds for spawn: NICs, boot properties, start, until active.',
    ),
    cfg.IntOpt(
        'power_deadline',
        default=600,
        min=1,
        max=3600,
        help='Seconds for power off, power on, reboot and destroy.',
    ),
    cfg.IntOpt(
        'unavailable_retries',
        default=3,
        min=0,
        max=20,
        help='Retries of an idempotent call the backend answers UNAVAILABLE '
        '(HMC or backend unreachable), before the driver gives up. '
        'Related options: retry_interval.',
    ),
    cfg.FloatOpt(
        'retry_interval',
        default=2.0,
        min=0,
        max=60,
        help='Seconds between such retries.',
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(dpm_group)
    conf.register_opts(dpm_opts, group=dpm_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(dpm_group, dpm_opts)]
