"""dpm-backend-ctl: which hosts a running dpm-backend serves, their instances, and why not.

It only reads, over the backend's gRPC API (ListHosts, GetHostStatus,
ListInstances, GetInstanceInfo and the standard health service), and connects
as the Nova driver does: the same ``[dpm]`` options and transport rules
(dpm_frontend.channel), without importing nova, so it runs on the backend host
and on compute nodes alike.

Connection options come from the command line, then from the ``[dpm]``
section of ``--config-file`` (nova.conf), then the ``[dpm]`` defaults: the
command line wins. Exit status: 0 all is well, 1 a host is not served or the
backend answered an error, 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import grpc
from google.protobuf import message as pb_message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_status import rpc_status
from oslo_config import cfg

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_frontend import channel
from dpm_frontend import conf as dpm_conf

PROG = 'dpm-backend-ctl'
# Exit statuses: 1 is a host not served, or an error the backend (or gRPC) answered.
OK, FAILED, USAGE = 0, 1, 2
SERVICE_NAME = pb.DESCRIPTOR.services_by_name['DPMHost'].full_name
# The [dpm] options that say how to reach the backend (the rest are the driver's).
CONNECTION_OPTIONS = (
    'backend',
    'allow_insecure_loopback',
    'tls_ca_file',
    'tls_cert_file',
    'tls_key_file',
    'tls_server_name',
    'token_file',
)
DEFAULT_TIMEOUT = 10.0
MISSING = '-'


def command_line_spelling(option: str) -> str:
    """How a transport refusal names an option: as this command's flag."""
    return '--' + option.replace('_', '-')


def config_file_spelling(option: str) -> str:
    """As this command's flag and as the config file's option, either of which set it."""
    return f'{command_line_spelling(option)} ([dpm] {option})'


class ConfigError(Exception):
    """The options or the config file cannot be used (exit status 2)."""


@dataclasses.dataclass(frozen=True)
class Failure:
    """A failed call as the backend (or gRPC) reported it: code, ErrorInfo reason, details."""

    rpc: str
    code: grpc.StatusCode
    reason: str
    details: str

    @classmethod
    def of(cls, rpc: str, error: grpc.RpcError) -> Failure:
        code = error.code() if hasattr(error, 'code') else grpc.StatusCode.UNKNOWN
        details = (error.details() if hasattr(error, 'details') else None) or str(error)
        reason = ''
        status = rpc_status.from_call(error) if hasattr(error, 'trailing_metadata') else None
        for detail in status.details if status else ():
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
        return cls(rpc, code, reason, ' '.join(details.split()))

    def describe(self) -> str:
        """``CODE REASON: details``, on one line."""
        code = f'{self.code.name} {self.reason}' if self.reason else self.code.name
        return f'{code}: {self.details}'

    def hint(self, target: str) -> str:
        if self.code == grpc.StatusCode.UNAVAILABLE and not self.reason:
            return f' (is dpm-backend running and serving at {target}? it may be shutting down)'
        if self.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return ' (see --token-file)'
        return ''

    def as_json(self) -> dict[str, str]:
        return {'code': self.code.name, 'reason': self.reason, 'details': self.details}


def _error_text(error: dict[str, str]) -> str:
    """A Failure.as_json() again as ``CODE REASON: details``."""
    return Failure('', grpc.StatusCode[error['code']], error['reason'], error['details']).describe()


class BackendError(Exception):
    """A call failed; the command ends with exit status 1."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


class Session:
    """The stubs, the token metadata and what is left of the command's time budget."""

    def __init__(
        self, options: SimpleNamespace, timeout: float, spelling: channel.Spelling
    ) -> None:
        try:
            self.metadata = channel.token_metadata(options, spelling)
            self.channel = channel.open_channel(options, spelling)
        except channel.TransportRefused as exc:
            raise ConfigError(str(exc)) from None
        self.target = options.backend
        self._stub = pb_grpc.DPMHostStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._end = time.monotonic() + timeout

    def close(self) -> None:
        self.channel.close()

    def _left(self) -> float:
        # Out of time: gRPC answers DEADLINE_EXCEEDED at once.
        return max(self._end - time.monotonic(), 0.0)

    def call(self, rpc: str, request: pb_message.Message) -> Any:
        try:
            return getattr(self._stub, rpc)(request, timeout=self._left(), metadata=self.metadata)
        except grpc.RpcError as error:
            raise BackendError(Failure.of(rpc, error)) from None

    def health(self, host: str) -> str:
        """The health status of the host's own service (open to every caller)."""
        request = health_pb2.HealthCheckRequest(service=f'{SERVICE_NAME}/{host}')
        try:
            reply = self._health.Check(request, timeout=self._left())
        except grpc.RpcError as error:
            failure = Failure.of('Health.Check', error)
            if failure.code == grpc.StatusCode.NOT_FOUND:
                return 'SERVICE_UNKNOWN'
            raise BackendError(failure) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def fields(message: pb_message.Message) -> dict[str, Any]:
    """A flat message as a dict: numbers stay numbers, enum values become their names."""
    result = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.enum_type is not None:
            value = field.enum_type.values_by_number[value].name
        result[field.name] = value
    return result


def _short(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix)


def list_hosts(session: Session) -> list[dict[str, Any]]:
    """Each host the caller may act for: served or not and why, health, and its status."""
    rows = []
    for entry in session.call('ListHosts', pb.ListHostsRequest()).hosts:
        row: dict[str, Any] = {
            'host': entry.host,
            'serving': entry.serving,
            'health': session.health(entry.host),
            'problem': entry.problem,
            'status': None,
            'error': None,
        }
        if entry.serving:
            try:
                reply = session.call('GetHostStatus', pb.GetHostStatusRequest(host=entry.host))
                row['status'] = fields(reply.status)
            except BackendError as exc:
                row['error'] = exc.failure.as_json()
        rows.append(row)
    return rows


def hosts_command(session: Session, args: argparse.Namespace) -> int:
    rows = list_hosts(session)
    if args.json:
        _print_json({'hosts': rows})
    else:
        _print_table(
            ('HOST', 'HEALTH', 'STORAGE', 'CPC', 'PROCESSORS', 'MEMORY_MB', 'INSTANCES', 'PROBLEM'),
            [_host_line(row) for row in rows],
        )
    served = all(row['serving'] and row['error'] is None for row in rows)
    return OK if served else FAILED


def _host_line(row: dict[str, Any]) -> list[str]:
    status = row['status']
    problem = row['problem']
    if row['error'] is not None:
        problem = _error_text(row['error'])
    if status is None:
        sizes = [MISSING] * 5
    else:
        sizes = [
            _short(status['storage_path'], 'STORAGE_PATH_'),
            status['cpc_name'],
            f'{status["vcpus_used"]}/{status["vcpus_total"]}',
            f'{status["memory_mb_used"]}/{status["memory_mb_total"]}',
            str(status['instance_count']),
        ]
    return [row['host'], row['health'], *sizes, problem or MISSING]


def instances_command(session: Session, args: argparse.Namespace) -> int:
    listed = session.call('ListInstances', pb.ListInstancesRequest(host=args.host)).instances
    rows = []
    for listed_info in listed:
        info = fields(listed_info)
        # ListInstances need not fill in sizes: GetInstanceInfo does.
        request = pb.GetInstanceInfoRequest(host=args.host, instance_uuid=info['instance_uuid'])
        try:
            info.update(fields(session.call('GetInstanceInfo', request).info))
        except BackendError as exc:
            if exc.failure.reason != 'INSTANCE_NOT_FOUND':
                raise
            continue  # deleted since it was listed
        rows.append(info)
    if args.json:
        _print_json({'host': args.host, 'instances': rows})
    else:
        _print_table(
            ('UUID', 'POWER_STATE', 'PARTITION_STATUS', 'PROCESSORS', 'MEMORY_MB', 'PARTITION'),
            [
                [
                    row['instance_uuid'],
                    _short(row['power_state'], 'POWER_STATE_'),
                    row['partition_status'],
                    str(row['vcpus']),
                    str(row['memory_mb']),
                    row['partition_name'],
                ]
                for row in rows
            ],
        )
    return OK


def explain(session: Session, host: str) -> dict[str, Any]:
    """Whether the host is served, and if not the backend's reason.

    ListHosts says why a host it lists is not served (a failed start-up check,
    the HMC not answering, the backend shutting down). A host it does not
    list, or one it calls served, is asked for its status: that call's error
    (unknown host, token, CPC no longer usable) is the reason then.
    """
    try:
        listed = {
            entry.host: entry for entry in session.call('ListHosts', pb.ListHostsRequest()).hosts
        }
    except BackendError as exc:
        if exc.failure.code != grpc.StatusCode.UNIMPLEMENTED:
            raise
        listed = {}  # a backend from before ListHosts
    result: dict[str, Any] = {
        'host': host,
        'health': session.health(host),
        'serving': False,
        'problem': '',
        'error': None,
        'status': None,
    }
    entry = listed.get(host)
    if entry is not None and not entry.serving:
        return {**result, 'problem': entry.problem}
    try:
        reply = session.call('GetHostStatus', pb.GetHostStatusRequest(host=host))
    except BackendError as exc:
        return {**result, 'problem': exc.failure.details, 'error': exc.failure.as_json()}
    return {**result, 'serving': True, 'status': fields(reply.status)}


def why_command(session: Session, args: argparse.Namespace) -> int:
    result = explain(session, args.host)
    if args.json:
        _print_json(result)
    elif result['serving']:
        status = result['status']
        print(
            f'host {_printable(args.host)} is serving: CPC {status["cpc_name"]} '
            f'({status["cpc_status"]}), storage path '
            f'{_short(status["storage_path"], "STORAGE_PATH_")}, processors '
            f'{status["vcpus_used"]}/{status["vcpus_total"]}, memory '
            f'{status["memory_mb_used"]}/{status["memory_mb_total"]} MiB, instances '
            f'{status["instance_count"]}; health {result["health"]}'
        )
    else:
        error = result['error']
        because = result['problem'] if error is None else _error_text(error)
        print(f'host {_printable(args.host)} is not serving: {_printable(because)}')
        print(f'health: {result["health"]}')
    return OK if result['serving'] else FAILED


def _printable(text: str) -> str:
    """Text from the backend for a terminal: control characters escaped."""
    return ''.join(c if c.isprintable() else c.encode('unicode_escape').decode() for c in text)


def _print_table(headers: Sequence[str], rows: list[list[str]]) -> None:
    """Aligned columns; the last one (free text) is not padded."""
    lines = [list(headers)] + [[_printable(cell) for cell in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers) - 1)]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print('  '.join([*cells, line[-1]]).rstrip())


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def connection_options(args: argparse.Namespace) -> SimpleNamespace:
    """The connection options: command line, then the config file's [dpm], then defaults."""
    values = {opt.dest: opt.default for opt in dpm_conf.dpm_opts if opt.dest in CONNECTION_OPTIONS}
    if args.config_file:
        conf = cfg.ConfigOpts()
        dpm_conf.register_opts(conf)
        try:
            conf(
                args=[],
                project=None,
                default_config_files=[args.config_file],
                default_config_dirs=[],
                use_env=False,
            )
            values.update({name: getattr(conf.dpm, name) for name in CONNECTION_OPTIONS})
        except cfg.Error as exc:
            raise ConfigError(f'--config-file {args.config_file}: {exc}') from None
    for name in CONNECTION_OPTIONS:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    return SimpleNamespace(**values)


def _common_options(parser: argparse.ArgumentParser, sub: bool) -> None:
    """Options that go before or after the command (after it: no defaults of their own)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if sub else value

    group = parser.add_argument_group('connection (as nova.conf [dpm]; these win over it)')
    group.add_argument(
        '--config-file',
        metavar='PATH',
        default=default(None),
        help='read the [dpm] connection options from this file (nova.conf)',
    )
    group.add_argument(
        '--backend',
        metavar='TARGET',
        default=default(None),
        help='"unix:<path>" or "<host>:<port>" (default: [dpm] backend, '
        'unix:/run/dpm-backend/dpm-backend.sock)',
    )
    for option, what in (
        ('tls_ca_file', 'CA that signed the backend certificate'),
        ('tls_cert_file', 'client certificate'),
        ('tls_key_file', 'private key of the client certificate'),
    ):
        group.add_argument(
            command_line_spelling(option),
            dest=option,
            metavar='PATH',
            default=default(None),
            help=f'PEM file: {what} (TCP only; the three go together)',
        )
    group.add_argument(
        '--tls-server-name',
        dest='tls_server_name',
        metavar='NAME',
        default=default(None),
        help='name checked against the certificates of several backends listed in --backend '
        '(default: [dpm] tls_server_name)',
    )
    group.add_argument(
        '--token-file',
        metavar='PATH',
        default=default(None),
        help='file holding the bearer token of the host(s) to act for',
    )
    group.add_argument(
        '--allow-insecure-loopback',
        action='store_const',
        const=True,
        default=default(None),
        help='allow plaintext TCP to a loopback address (never to any other)',
    )
    parser.add_argument(
        '--timeout',
        type=float,
        metavar='SECONDS',
        default=default(DEFAULT_TIMEOUT),
        help=f'time for the whole command (default {DEFAULT_TIMEOUT:g})',
    )
    parser.add_argument(
        '--json',
        action='store_true',
        default=default(False),
        help='print JSON for scripts instead of aligned columns',
    )


COMMANDS: dict[str, Callable[[Session, argparse.Namespace], int]] = {
    'hosts': hosts_command,
    'instances': instances_command,
    'why': why_command,
    'explain': why_command,
}


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog=PROG,
        description='Inspect a running dpm-backend over its gRPC API (read only).',
        epilog='Exit status: 0 all is well, 1 a host is not served or the backend '
        'answered an error, 2 usage or configuration error.',
    )
    _common_options(main_parser, sub=False)
    commands = main_parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    hosts = commands.add_parser(
        'hosts',
        help='the hosts you may act for: health, storage path, CPC, usage',
    )
    _common_options(hosts, sub=True)
    instances = commands.add_parser('instances', help="a host's instances")
    instances.add_argument('host', metavar='HOST')
    _common_options(instances, sub=True)
    why = commands.add_parser(
        'why', aliases=['explain'], help='whether a host is served, and if not why'
    )
    why.add_argument('host', metavar='HOST')
    _common_options(why, sub=True)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # dpm_frontend.channel warns of plaintext TCP to loopback; say who speaks.
    logging.basicConfig(format=f'{PROG}: %(message)s', level=logging.WARNING)
    if not args.timeout > 0:
        print(f'{PROG}: --timeout must be more than 0 seconds', file=sys.stderr)
        return USAGE
    try:
        spelling = config_file_spelling if args.config_file else command_line_spelling
        session = Session(connection_options(args), args.timeout, spelling)
    except ConfigError as exc:
        print(f'{PROG}: {exc}', file=sys.stderr)
        return USAGE
    try:
        return COMMANDS[args.command](session, args)
    except BackendError as exc:
        failure = exc.failure
        line = f'{failure.rpc}: {failure.describe()}{failure.hint(session.target)}'
        print(f'{PROG}: {_printable(line)}', file=sys.stderr)
        return FAILED
    finally:
        session.close()


if __name__ == '__main__':
    sys.exit(main())
