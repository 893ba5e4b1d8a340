"""One exception hierarchy for the wire layer, by cause (after httpx's `_exceptions.py`).

    OrchestralError
    ├── DecodeError                bytes that are not a valid input record (goes to the DLQ)
    ├── ConfigurationError         settings that cannot work (raised at start-up)
    └── BrokerConnectionError      the cluster cannot be used (raised when connecting)
        ├── BrokerUnreachable      nothing answered within the connect timeout
        └── BrokerSecurityError    the cluster answered but refused us: retrying cannot help
            ├── AuthenticationFailed   SASL: wrong credentials or mechanism
            └── TLSHandshakeFailed     TLS: certificate not trusted, wrong host, no TLS there

`DecodeError.reason` is short, single-line and safe to put in a Kafka header. The messages of
`BrokerConnectionError`s name the settings to check and never contain a secret.
"""

from __future__ import annotations


class OrchestralError(Exception):
    """Base class of every error this project raises on purpose."""


class DecodeError(OrchestralError):
    """A record could not be decoded or does not match the contract's schema."""

    def __init__(self, reason: str, *, thread_id: str | None = None) -> None:
        # Headers are single-line; keep the reason bounded so a huge bad value cannot bloat it.
        self.reason = " ".join(reason.split())[:500]
        # The thread id, when it could be read, so the caller can still answer `invalid`.
        self.thread_id = thread_id
        super().__init__(self.reason)


class ConfigurationError(OrchestralError):
    """A setting is invalid; the message names the setting."""


class BrokerConnectionError(OrchestralError):
    """The cluster could not be used; the message says why and which settings to check."""


class BrokerUnreachable(BrokerConnectionError):
    """The cluster did not answer within the configured time."""


class BrokerSecurityError(BrokerConnectionError):
    """The cluster answered but refused the connection's security: retrying cannot help."""


class AuthenticationFailed(BrokerSecurityError):
    """SASL authentication was refused (wrong user, password or mechanism)."""


class TLSHandshakeFailed(BrokerSecurityError):
    """The TLS handshake failed (untrusted or mismatched certificate, or no TLS listener)."""
