"""HMC error answers: an HTTP status, a reason code and a message."""

from __future__ import annotations

from typing import Any


class HmcError(Exception):
    """An HMC operation refused with ``status``, ``reason``; answered as zhmcclient reads it."""

    def __init__(self, status: int, reason: int, message: str) -> None:
        super().__init__(f'{status},{reason}: {message}')
        self.status = status
        self.reason = reason
        self.message = message

    def body(self, method: str, uri: str) -> dict[str, Any]:
        """The error body (the fields zhmcclient.HTTPError reads, as zc's mock writes them)."""
        return {
            'http-status': self.status,
            'reason': self.reason,
            'message': self.message,
            'request-method': method,
            'request-uri': uri,
        }


def not_found(uri: str) -> HmcError:
    # 404, reason 1: the object does not exist (zc mock InvalidResourceError).
    return HmcError(404, 1, f'Unknown resource with URI: {uri}')
