"""Per-host bearer tokens: a caller may act only for the hosts its token names.

A DPMHost call carries the gRPC metadata ``authorization: Bearer <token>``.
The token is compared in constant time with the token of every host
(``[host:<name>] token_file``); the hosts whose token it equals are the hosts
the caller may name in the request's ``host`` field. ListHosts, which names
no host, lists just those hosts. Health and reflection stay open: they reveal
nothing about instances.

The check runs before the request is looked at in any other way, so a caller
without a valid token learns nothing (not even which hosts exist), and an
invalid request from it never reaches validation or the HMC.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

import grpc

from dpm_backend import errors
from dpm_backend import guard

LOG = logging.getLogger(__name__)

METADATA_KEY = 'authorization'
SCHEME = 'bearer'


def presented_token(metadata) -> str | None:
    """The bearer token in the call's metadata; None if absent or malformed."""
    values = [value for key, value in (metadata or ()) if key.lower() == METADATA_KEY]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].partition(' ')
    if scheme.lower() != SCHEME or not token:
        return None
    return token


class TokenChecker:
    """Which hosts a presented token grants; the decision for one request."""

    def __init__(self, tokens: Mapping[str, str], hosts: set[str]) -> None:
        self._tokens = {host: token.encode() for host, token in tokens.items()}
        # Hosts without a token of their own are open to every caller.
        self._open = frozenset(hosts - set(tokens))

    def granted(self, token: str | None) -> frozenset[str]:
        if token is None:
            return frozenset()
        presented = token.encode('utf-8', 'replace')
        # Compare with every token, whatever matches, so timing says nothing.
        matches = [
            host
            for host, expected in self._tokens.items()
            if hmac.compare_digest(presented, expected)
        ]
        return frozenset(matches)

    def check(self, host: str, token: str | None) -> errors.DPMError | None:
        """None if the call may act for ``host``, else the error to answer."""
        if host in self._open:
            return None
        granted = self.granted(token)
        if host in granted:
            return None
        if not granted:
            return _unauthenticated(token)
        return errors.permission_denied(host[:80])

    def listed(self, token: str | None) -> frozenset[str] | errors.DPMError:
        """The hosts ListHosts shows the caller (those it may act for), or the error to answer.

        A token no host has is refused even where hosts without a token exist:
        its sender meant to be someone and should hear that it is not. Without
        a token the caller sees the hosts without one; with none such it is
        refused, so that it never learns which hosts exist.
        """
        granted = self.granted(token)
        if (token is not None and not granted) or not (granted or self._open):
            return _unauthenticated(token)
        return granted | self._open


def _unauthenticated(token: str | None) -> errors.DPMError:
    why = 'no' if token is None else 'an invalid'
    return errors.unauthenticated(
        f'{why} bearer token in the "{METADATA_KEY}" metadata ("{METADATA_KEY}: Bearer <token>")'
    )


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuse DPMHost calls whose token does not grant the host they name."""

    def __init__(self, checker: TokenChecker, service: str) -> None:
        self._checker = checker
        self._prefix = f'/{service}/'
        self._list_hosts = f'/{service}/ListHosts'

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        token = presented_token(handler_call_details.invocation_metadata)
        checker = self._checker
        if method != self._list_hosts:
            return guard.checked(
                handler, method, lambda request: checker.check(request.host, token)
            )
        inner = handler.unary_unary

        def listed(request, context):
            visible = checker.listed(token)
            if isinstance(visible, errors.DPMError):
                LOG.info('%s refused: %s %s', method, visible.code.name, visible.reason_name)
                context.abort_with_status(visible.to_status())  # raises
                return None
            reply = inner(request, context)
            kept = [host for host in reply.hosts if host.host in visible]
            del reply.hosts[:]
            reply.hosts.extend(kept)
            return reply

        return grpc.unary_unary_rpc_method_handler(
            listed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
