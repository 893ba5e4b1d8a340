"""How every client reaches the cluster: the one place that turns settings into connection
arguments (aiokafka's and faust's) and tells why a connection failed.

    AIOKafkaProducer(**kafka_kwargs(settings), acks="all")
    await start_client(producer, settings)        # BrokerConnectionError with a clear reason

Security (README, "Security"): `ORCHESTRAL_SECURITY_PROTOCOL` PLAINTEXT, SSL, SASL_PLAINTEXT or
SASL_SSL; SASL with SCRAM-SHA-512 (or SCRAM-SHA-256, PLAIN); TLS verified against
`ORCHESTRAL_SSL_CAFILE` (else the system CAs), with an optional client certificate. The password
is read from its SecretStr only here, handed to the Kafka client, and scrubbed from every message
this module builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest

from config.settings import Settings
from schemas.errors import (
    AuthenticationFailed,
    BrokerConnectionError,
    BrokerUnreachable,
    ConfigurationError,
    TLSHandshakeFailed,
)

# Refusals by the broker's SASL layer: permanent for these credentials.
_AUTH_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)
_TRANSIENT = (TimeoutError, kafka_errors.KafkaError, OSError)


def uses_sasl(settings: Settings) -> bool:
    return settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def uses_tls(settings: Settings) -> bool:
    return settings.security_protocol in ("SSL", "SASL_SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL / SASL_SSL (None otherwise); ConfigurationError if files are bad."""
    if not uses_tls(settings):
        return None
    cafile = settings.ssl_cafile
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"ORCHESTRAL_SSL_CAFILE: cannot load CA certificates from {cafile}: {_reason(exc)}"
        ) from None
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile is not None:
        secret = settings.ssl_key_password

        # A callable, never None: with None, OpenSSL would prompt on the terminal for the
        # password of an encrypted key.
        def password() -> str:
            return secret.get_secret_value() if secret is not None else ""

        try:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
                password=password,
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(
                "ORCHESTRAL_SSL_CERTFILE / ORCHESTRAL_SSL_KEYFILE / ORCHESTRAL_SSL_KEY_PASSWORD: "
                f"cannot load the client certificate {settings.ssl_certfile} and its key: "
                f"{_scrub(_reason(exc), settings)}"
            ) from None
    return context


def kafka_kwargs(settings: Settings) -> dict[str, Any]:
    """`bootstrap_servers` and the security arguments of every aiokafka client we create."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if uses_sasl(settings):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = sasl_password(settings)
    return kwargs


async def start_client(client: Any, settings: Settings, timeout: float | None = None) -> None:
    """`await client.start()` within `timeout` (default: the connect timeout); on failure, close
    it and raise a BrokerConnectionError that says why (AuthenticationFailed, TLSHandshakeFailed
    or BrokerUnreachable)."""
    limit = max(0.5, settings.connect_timeout if timeout is None else timeout)
    began = time.monotonic()
    try:
        await asyncio.wait_for(client.start(), limit)
    except _TRANSIENT as exc:
        await _close(client)
        left = limit - (time.monotonic() - began)
        problem = await diagnose(settings, timeout=min(10.0, max(1.0, left)))
        raise (problem or unreachable(settings, exc)) from None


async def diagnose(settings: Settings, timeout: float) -> BrokerConnectionError | None:
    """Connect once to each bootstrap server as a client would (TLS handshake, SASL
    authentication, a metadata request): None if one works, else why not. A refusal of our
    credentials or certificates wins over a server that does not answer."""
    kwargs = kafka_kwargs(settings)
    kwargs.pop("bootstrap_servers")
    last: BaseException | None = None
    for host, port in settings.bootstrap_addresses:
        server = f"{host}:{port}"
        conn = None
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    port,
                    request_timeout_ms=int(timeout * 1000),
                    **kwargs,
                ),
                timeout,
            )
            await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
            return None
        except (*_TRANSIENT, ValueError) as exc:
            security = _security_error(settings, server, exc)
            if security is not None:
                return security
            last = exc
        finally:
            if conn is not None:
                conn.close()
    return unreachable(settings, last)


def unreachable(settings: Settings, cause: BaseException | None) -> BrokerUnreachable:
    detail = _scrub(_reason(cause), settings) if cause is not None else "timeout"
    return BrokerUnreachable(
        f"cannot reach Kafka at {settings.bootstrap_servers} within "
        f"{settings.connect_timeout:g}s ({detail}); is the broker running?"
        " Start a local one with `orchestral-stream broker start`. If it answers but closes the"
        f" connection, check that ORCHESTRAL_SECURITY_PROTOCOL={settings.security_protocol}"
        " is what its listener speaks."
    )


def _security_error(
    settings: Settings, server: str, exc: BaseException
) -> BrokerConnectionError | None:
    """The refusal `exc` stands for (following its causes), or None if it may be transient."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _AUTH_ERRORS):
            return AuthenticationFailed(
                f"authentication failed at {server} as user {settings.sasl_username!r} "
                f"({settings.security_protocol}, {settings.sasl_mechanism}): "
                f"{_scrub(_reason(current), settings)}. Check ORCHESTRAL_SASL_USERNAME, "
                "ORCHESTRAL_SASL_PASSWORD and ORCHESTRAL_SASL_MECHANISM."
            )
        if isinstance(current, ssl.SSLError):
            return TLSHandshakeFailed(
                f"TLS handshake with {server} failed ({settings.security_protocol}): "
                f"{_scrub(_reason(current), settings)}. Check that this is a TLS listener, that "
                "ORCHESTRAL_SSL_CAFILE holds the CA that signed the broker's certificate and "
                "the certificate names the host (ORCHESTRAL_SSL_CHECK_HOSTNAME), and the client "
                "certificate (ORCHESTRAL_SSL_CERTFILE / ORCHESTRAL_SSL_KEYFILE) if the broker "
                "requires one."
            )
        current = current.__cause__ or current.__context__
    return None


def sasl_password(settings: Settings) -> str | None:
    secret = settings.sasl_password
    return secret.get_secret_value() if secret is not None else None


def _reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, kafka_errors.UnsupportedSaslMechanismError):
        return f"{name}: the broker does not enable this SASL mechanism on this listener"
    text = " ".join(str(exc).split())
    if not text:
        return name
    return text if name in text else f"{name}: {text}"


def _scrub(text: str, settings: Settings) -> str:
    """Defence in depth: no message we build may carry a secret, whatever a library put in it."""
    for secret in (settings.sasl_password, settings.ssl_key_password):
        value = secret.get_secret_value() if secret is not None else ""
        if value:
            text = text.replace(value, "***")
    return text


async def _close(client: Any) -> None:
    closer = getattr(client, "stop", None) or getattr(client, "close", None)
    if closer is not None:
        with contextlib.suppress(Exception):  # closing a client that failed to start
            await closer()
