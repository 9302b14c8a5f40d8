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

# A retry starts only if at least this much of the call's deadline is left
# after the pause before it (seconds); the client enforces it, the help says it.
MIN_ATTEMPT_SECONDS = 1.0

# A deadline is the budget of one Nova call, retries and pauses included.
_DEADLINE_HELP = (
    ' The deadline covers the whole call: retries while the backend is '
    'unavailable, and the pauses between them, fit within it. '
    'Related options: unavailable_retries, retry_interval.'
)

dpm_opts = [
    cfg.StrOpt(
        'backend',
        default='unix:/run/dpm-backend/dpm-backend.sock',
        help='The dpm-backend, as a gRPC target: "unix:<path>" (or '
        '"unix:///<path>"), or TCP: "<host>:<port>", "[<ipv6>]:<port>", '
        '"ipv4:<a.b.c.d>:<port>", "ipv6:[<addr>]:<port>", "dns:///<name>:<port>". '
        'The backend of HMC <hmc> run by systemd (dpm-backend@<hmc>) serves on '
        'unix:/run/dpm-backend/<hmc>/dpm-backend.sock; the default is the socket '
        'of a backend started by hand. '
        'A unix socket is plaintext: the socket file is the access control. TCP '
        'needs tls_ca_file, tls_cert_file and tls_key_file (the backend requires '
        'mutual TLS); plaintext TCP is refused at start, except to a loopback '
        'address (127.0.0.0/8, ::1, localhost) with allow_insecure_loopback. '
        'Several backends of one HMC (one active, the others standby): their '
        'addresses separated by commas, "<ip>:<port>,<ip>:<port>" (IPv6 as '
        '"[<addr>]:<port>"; one family, no host names), or "dns:///<name>:<port>" '
        'with a DNS name that resolves to each of them; TCP only, with TLS (and '
        'tls_server_name for a list). The driver then sends each call to the backend whose '
        'health is SERVING (the active one) and follows a takeover by itself; a '
        'dns: target is always followed this way. '
        'Related options: tls_ca_file, tls_cert_file, tls_key_file, tls_server_name, '
        'allow_insecure_loopback, token_file.',
    ),
    cfg.BoolOpt(
        'allow_insecure_loopback',
        default=False,
        help='Allow plaintext TCP (no TLS) when backend is a loopback address '
        '(127.0.0.0/8, ::1, localhost), e.g. a backend started by local tools or '
        'tests with [backend] allow_insecure_loopback. Never allows plaintext to any '
        'other address; a unix socket needs no flag. '
        'Related options: backend, tls_ca_file, tls_cert_file, tls_key_file.',
    ),
    cfg.StrOpt(
        'tls_ca_file',
        help='PEM file of the CA that signed the backend certificate: TLS '
        'verification of the backend. TCP targets only; set together with '
        'tls_cert_file and tls_key_file. '
        'Related options: backend, tls_cert_file, tls_key_file.',
    ),
    cfg.StrOpt(
        'tls_cert_file',
        help='PEM file of the client certificate presented to the backend (it must '
        "be signed by the backend's [backend] tls_client_ca_file). TCP targets "
        'only; set together with tls_ca_file and tls_key_file. '
        'Related options: backend, tls_ca_file, tls_key_file.',
    ),
    cfg.StrOpt(
        'tls_key_file',
        help='PEM file of the private key of tls_cert_file. TCP targets only; set '
        'together with tls_ca_file and tls_cert_file. '
        'Related options: backend, tls_ca_file, tls_cert_file.',
    ),
    cfg.HostAddressOpt(
        'tls_server_name',
        help='The name (DNS name or IP address) that the backend certificate must '
        'carry as a subjectAltName. Default: the host of backend. Required when '
        'backend lists several addresses: TLS then checks this one name against '
        'the certificate of every backend of the list, so each carries it (one '
        'name for the pair, such as dpm-backend-hmc1.example.com, besides its '
        'own). TCP targets only. '
        'Related options: backend, tls_ca_file.',
    ),
    cfg.StrOpt(
        'token_file',
        help='File holding the token that binds this Nova host to the backend '
        "(the backend's [host:<name>] token_file); sent with every call as "
        '"authorization: Bearer <token>" metadata, never in clear text over a '
        'network (see backend). Optional: without it no token is sent. '
        'Related options: backend.',
    ),
    cfg.IntOpt(
        'read_deadline',
        default=30,
        min=1,
        max=600,
        help='Seconds for calls that only read (host status, instance list, '
        'instance info, volume connector).' + _DEADLINE_HELP,
    ),
    cfg.IntOpt(
        'prepare_deadline',
        default=300,
        min=1,
        max=3600,
        help='Seconds for creating the partition and its vHBAs.' + _DEADLINE_HELP,
    ),
    cfg.IntOpt(
        'spawn_deadline',
        default=900,
        min=1,
        max=3600,
        help='Seconds for spawn: NICs, boot properties, start, until active.' + _DEADLINE_HELP,
    ),
    cfg.IntOpt(
        'power_deadline',
        default=600,
        min=1,
        max=3600,
        help='Seconds for power off, power on, reboot and destroy.' + _DEADLINE_HELP,
    ),
    cfg.IntOpt(
        'unavailable_retries',
        default=3,
        min=0,
        max=20,
        help='At most this many retries of an idempotent call the backend answers '
        'UNAVAILABLE (HMC or backend unreachable) or sheds load, before the driver '
        'reports itself not ready; 0 disables retries. Reboot is retried only when '
        'a standby backend refused it (reason BACKEND_STANDBY: it did not begin). '
        f"A retry starts only if at least {MIN_ATTEMPT_SECONDS:g} s of the call's "
        'deadline is left after retry_interval, and gets only what is left. '
        'Related options: retry_interval, read_deadline, prepare_deadline, '
        'spawn_deadline, power_deadline.',
    ),
    cfg.FloatOpt(
        'retry_interval',
        default=2.0,
        min=0,
        max=60,
        help="Seconds between such retries; they count against the call's deadline. "
        'Related options: unavailable_retries.',
    ),
    cfg.FloatOpt(
        'lifecycle_stopped_event_delay',
        default=15.0,
        min=0,
        max=600,
        help='Seconds a STOPPED lifecycle event waits before it reaches Nova. The '
        "driver follows the backend's stream of instance changes and tells Nova "
        'when a partition starts or stops outside of Nova (the guest shut down, '
        'or someone started or stopped it on the HMC); Nova then corrects the '
        'server unless a task is under way: an ACTIVE server whose partition '
        'stopped becomes SHUTOFF (Nova stop), and the partition of a SHUTOFF '
        'server that was started is stopped again (Nova force stop). Any other '
        'event of the same instance within the delay cancels a pending STOPPED '
        '(a reboot on the HMC is a stop and a start), as the libvirt driver does '
        'with its fixed 15 s. 0 sends STOPPED at once; more than the periodic '
        'sync_power_state_interval (default 600) gains nothing. Nova ignores '
        'these events when [workarounds] handle_virt_lifecycle_events is false. '
        'Related options: [DEFAULT] sync_power_state_interval, '
        '[workarounds] handle_virt_lifecycle_events.',
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(dpm_group)
    conf.register_opts(dpm_opts, group=dpm_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(dpm_group, dpm_opts)]
