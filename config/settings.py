"""All settings, declared once (after faust's typed settings), read from the environment.

Every setting is an env var `ORCHESTRAL_<NAME>` (e.g. `ORCHESTRAL_DEFAULT_POLICY=queue`), except
the broker address, which is the conventional `KAFKA_BOOTSTRAP_SERVERS`. Invalid values fail at
start-up with a `ConfigurationError` that names the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.core.limits import Limits
from schemas.errors import ConfigurationError
from schemas.records import PolicyName, canonical_policy_name

ENV_PREFIX = "ORCHESTRAL_"
THREAD_TABLE = "threads"  # the worker's table of thread states

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
# Never echoed back in an error message, whatever their value.
SECRET_FIELDS = frozenset({"sasl_password", "ssl_key_password", "api_token"})


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _mechanism(value: Any) -> Any:
    return value.strip().upper().replace("_", "-") if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def bootstrap_addresses(value: str) -> list[tuple[str, int]]:
    """`host:port[,host:port...]` -> [(host, port)]; ValueError says which entry is wrong.

    A bare host is refused rather than completed with :9092: a typo (`nonsense`) would
    otherwise be retried for the whole connect timeout before anyone learns of it.
    """
    addresses = []
    for entry in (part.strip() for part in value.split(",")):
        host, colon, port = entry.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:9092
        if not entry or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} is not host:port (e.g. 127.0.0.1:9092)")
        addresses.append((host, int(port)))
    return addresses


def _bootstrap(value: Any) -> Any:
    if isinstance(value, str):
        bootstrap_addresses(value)
        return ",".join(part.strip() for part in value.split(","))
    return value


def _blank_is_none(value: Any) -> Any:
    """An env var set to "" means unset (compose files often pass empty values through)."""
    return None if isinstance(value, str) and not value.strip() else value


class Settings(BaseSettings):
    """Runtime behaviour (what the core decides) and operation (how the worker runs)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="ignore",
        validate_default=True,
        populate_by_name=True,
    )

    # --- thread runtime (the contract's defaults) ---
    default_policy: Annotated[PolicyName, BeforeValidator(canonical_policy_name)] = Field(
        "interrupt", description="Concurrency policy of threads not configured otherwise."
    )
    max_parallel: int = Field(4, ge=1, description="`parallel`: non-terminal interactions allowed.")
    max_queue_depth: int = Field(10, ge=1, description="`queue`: events waiting per thread.")
    max_interactions_per_thread: int = Field(
        10, ge=1, description="Non-terminal interactions per thread; a start over it is rejected."
    )
    auto_cleanup: bool = Field(
        True, description="Purge terminal interactions before a start (not `parallel`)."
    )
    terminal_retention: int = Field(
        100, ge=0, description="Terminal interactions kept per thread; oldest purged first."
    )
    dedupe_window: int = Field(
        1000, ge=0, description="Event ids remembered per thread to answer `duplicate`."
    )
    replay_buffer: int = Field(
        10_000,
        ge=1,
        description="Outputs of uncommitted records kept per thread to re-emit them identically.",
    )
    # Deadlines (seconds of logical time, 0 = none), per thread with `configure`.
    run_timeout: float = Field(
        3600.0, ge=0, allow_inf_nan=False, description="Seconds an interaction may stay active."
    )
    idle_timeout: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds an active interaction may go without a heartbeat, output or command.",
    )
    wait_timeout: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds an interaction may wait for a user or an event (per wait: `timeout`).",
    )
    thread_ttl: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds an idle thread is kept after its last record, then expired.",
    )

    # --- topics and encoding ---
    events_topic: str = Field("orchestral.events", min_length=1)
    store_topic: str = Field("orchestral.store", min_length=1)
    outcomes_topic: str = Field("orchestral.outcomes", min_length=1)
    dlq_topic: str = Field("orchestral.dlq", min_length=1)
    codec: Literal["json", "avro"] = Field("json", description="Value codec of every output.")
    max_output_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024 * 1024,
        description="Largest record the worker writes (store, outcomes, DLQ, state changelog): "
        "topics it creates get it as max.message.bytes. An input whose outputs or state would "
        "be larger is dead-lettered instead.",
    )
    max_input_bytes: int = Field(
        1_000_000,
        ge=1024,
        description="Largest encoded input record the client and CLI produce; a larger one is "
        "refused before producing. The default stays under the events topic's broker default "
        "(message.max.bytes, 1 MiB including the batch overhead): raise both together.",
    )

    # --- worker ---
    bootstrap_servers: Annotated[str, BeforeValidator(_bootstrap)] = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ORCHESTRAL_BOOTSTRAP_SERVERS"),
        min_length=1,
    )
    app_id: str = Field("orchestral-stream", min_length=1, description="Consumer group / app id.")
    partitions: int = Field(8, ge=1, description="Partitions of topics created at start.")
    replication_factor: int = Field(1, ge=1)
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    data_dir: Path = Field(Path("./var/data"), description="Local RocksDB state.")
    web_host: str = Field("127.0.0.1", description="Metrics/web bind address (not 0.0.0.0).")
    web_port: int = Field(6066, ge=1, le=65535)
    session_timeout: float = Field(
        10.0,
        gt=0,
        description="Consumer group session timeout (s): how fast a dead worker is noticed.",
    )
    commit_interval: float = Field(1.0, gt=0, description="Seconds between offset commits.")
    batch_max_records: int = Field(
        500,
        ge=1,
        description="Most input records handled together: their outputs go to the producer as "
        "one batch per partition. A batch is what has arrived, so at low load it is one record.",
    )
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = Field(
        "info", description="Log level of the worker (and of the CLI's Kafka client with debug)."
    )
    connect_timeout: float = Field(30.0, gt=0, description="Seconds to reach the broker at start.")
    progress_interval: float = Field(10.0, gt=0, description="Seconds between progress lines.")
    deadline_interval: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds between the worker's checks of its threads' deadlines (its clock).",
    )

    # --- executors (processors.executor, `orchestral-stream executor`) ---
    executor_group: str = Field(
        "orchestral-executors",
        min_length=1,
        description="Consumer group of the executors: a thread's work runs on one at a time.",
    )
    heartbeat_interval: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds between an executor's heartbeats per running interaction "
        "(keep it under half of ORCHESTRAL_IDLE_TIMEOUT).",
    )
    executor_history: int = Field(
        50, ge=0, le=1000, description="Stored events an executor's turn gets as its history."
    )

    # --- connection security (every client: worker, admin, CLI) ---
    security_protocol: Annotated[SecurityProtocol, BeforeValidator(_upper)] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: Annotated[SaslMechanism, BeforeValidator(_mechanism)] = Field(
        "SCRAM-SHA-512", description="SASL mechanism of the SASL_* protocols."
    )
    sasl_username: Annotated[str | None, BeforeValidator(_blank_is_none)] = None
    sasl_password: Annotated[SecretStr | None, BeforeValidator(_blank_is_none)] = Field(
        None, repr=False, description="Never logged or printed."
    )
    ssl_cafile: Annotated[FilePath | None, BeforeValidator(_blank_is_none)] = Field(
        None, description="PEM CA bundle the broker's certificate must chain to (else system CAs)."
    )
    ssl_certfile: Annotated[FilePath | None, BeforeValidator(_blank_is_none)] = Field(
        None, description="PEM client certificate (chain), for brokers requiring client auth."
    )
    ssl_keyfile: Annotated[FilePath | None, BeforeValidator(_blank_is_none)] = Field(
        None, description="PEM private key of the client certificate (if not in the certfile)."
    )
    ssl_key_password: Annotated[SecretStr | None, BeforeValidator(_blank_is_none)] = Field(
        None, repr=False, description="Password of an encrypted ssl_keyfile."
    )
    ssl_check_hostname: bool = Field(
        True, description="Verify the broker's certificate matches the host name it is reached by."
    )

    # --- HTTP thread API (processors/api) ---
    api_token: Annotated[SecretStr | None, BeforeValidator(_blank_is_none)] = Field(
        None,
        repr=False,
        description="Bearer token every /threads call must carry; required to bind the web "
        "server to a non-loopback address. Never logged or printed.",
    )
    advertised_url_setting: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(
        None,
        validation_alias=AliasChoices("ORCHESTRAL_ADVERTISED_URL", "advertised_url_setting"),
        pattern=r"^https?://[^/\s]+(/\S*)?$",
        description="Base URL other workers forward thread requests to "
        "(http[s]://host:port[/prefix]); default http://{web_host}:{web_port}. "
        "Read it as `Settings.advertised_url`.",
    )
    api_url_setting: Annotated[str | None, BeforeValidator(_blank_is_none)] = Field(
        None,
        validation_alias=AliasChoices("ORCHESTRAL_API_URL", "api_url_setting"),
        pattern=r"^https?://[^/\s]+(/\S*)?$",
        description="The thread API the CLI and the Client read threads from; default the "
        "local worker's (http://127.0.0.1:{web_port}). Read it as `Settings.api_url`.",
    )

    @model_validator(mode="after")
    def _security_is_coherent(self) -> Settings:
        protocol = self.security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol.endswith("SSL")
        problems = []
        if sasl:
            for name in ("sasl_username", "sasl_password"):
                value = getattr(self, name)
                if value is None or not str(
                    value.get_secret_value() if isinstance(value, SecretStr) else value
                ):
                    problems.append(f"{env_name(name)} is required with {protocol}")
        else:
            for name in ("sasl_username", "sasl_password"):
                if getattr(self, name) is not None:
                    problems.append(
                        f"{env_name(name)} is set but ORCHESTRAL_SECURITY_PROTOCOL={protocol} "
                        "does not use SASL (set it to SASL_PLAINTEXT or SASL_SSL)"
                    )
        if not tls:
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password"):
                if getattr(self, name) is not None:
                    problems.append(
                        f"{env_name(name)} is set but ORCHESTRAL_SECURITY_PROTOCOL={protocol} "
                        "does not use TLS (set it to SSL or SASL_SSL)"
                    )
        else:
            if self.ssl_keyfile is not None and self.ssl_certfile is None:
                problems.append(f"{env_name('ssl_keyfile')} needs {env_name('ssl_certfile')}")
            if self.ssl_key_password is not None and self.ssl_certfile is None:
                problems.append(f"{env_name('ssl_key_password')} needs {env_name('ssl_certfile')}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def bootstrap_addresses(self) -> list[tuple[str, int]]:
        """KAFKA_BOOTSTRAP_SERVERS as (host, port) pairs (validated at load)."""
        return bootstrap_addresses(self.bootstrap_servers)

    @property
    def advertised_url(self) -> str:
        """Where other workers reach this worker's HTTP API (no trailing slash)."""
        if self.advertised_url_setting is not None:
            return self.advertised_url_setting.rstrip("/")
        host = f"[{self.web_host}]" if ":" in self.web_host else self.web_host
        return f"http://{host}:{self.web_port}"

    @property
    def api_url(self) -> str:
        """Where the CLI and the Client reach a worker's thread API (no trailing slash)."""
        if self.api_url_setting is not None:
            return self.api_url_setting.rstrip("/")
        host = self.web_host
        if host in ("0.0.0.0", "::", ""):  # listening everywhere: reach it on loopback
            host = "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.web_port}"

    @property
    def changelog_topic(self) -> str:
        """The thread table's changelog: faust names it `{app id}-{table name}-changelog`."""
        return f"{self.app_id}-{THREAD_TABLE}-changelog"

    def limits(self) -> Limits:
        """The core's knobs (the core never reads the environment itself)."""
        return Limits(
            default_policy=self.default_policy,
            max_parallel=self.max_parallel,
            max_queue_depth=self.max_queue_depth,
            max_interactions_per_thread=self.max_interactions_per_thread,
            auto_cleanup=self.auto_cleanup,
            terminal_retention=self.terminal_retention,
            dedupe_window=self.dedupe_window,
            replay_buffer=self.replay_buffer,
            run_timeout=self.run_timeout,
            idle_timeout=self.idle_timeout,
            wait_timeout=self.wait_timeout,
            thread_ttl=self.thread_ttl,
            events_topic=self.events_topic,
        )


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and overrides); ConfigurationError names a bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def env_name(field: str) -> str:
    """The environment variable that sets `field` (a field name, or the alias an error names)."""
    if field.lower() in ("bootstrap_servers", "kafka_bootstrap_servers"):
        # pydantic reports the first alias whichever was set: name the one that is.
        alias = ENV_PREFIX + "BOOTSTRAP_SERVERS"
        unset = "KAFKA_BOOTSTRAP_SERVERS" not in os.environ and alias in os.environ
        return alias if unset else "KAFKA_BOOTSTRAP_SERVERS"
    if field.upper().startswith(ENV_PREFIX):
        return field.upper()  # already a variable name (an alias)
    return ENV_PREFIX + field.upper()


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        if not err["loc"]:
            # A check across fields: its message names the variables; its input is every
            # setting (secrets included), so it is never shown.
            problems.append(err["msg"].removeprefix("Value error, "))
            continue
        field = str(err["loc"][0])
        if field in SECRET_FIELDS:
            problems.append(f"{env_name(field)}: {err['msg']} (value not shown)")
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{env_name(field)}: {message} (got {err.get('input')!r})")
    return "invalid settings: " + "; ".join(problems)
