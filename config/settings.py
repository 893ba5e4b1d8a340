"""All settings, declared once (after faust's typed settings), read from the environment.

Every setting is an env var `ORCHESTRAL_<NAME>` (e.g. `ORCHESTRAL_DEFAULT_POLICY=queue`), except
the broker address, which is the conventional `KAFKA_BOOTSTRAP_SERVERS`. Invalid values fail at
start-up with a `ConfigurationError` that names the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import ConfigurationError
from schemas.records import PolicyName, canonical_policy_name

ENV_PREFIX = "ORCHESTRAL_"
THREAD_TABLE = "threads"  # the worker's table of thread states


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

    # --- topics and encoding ---
    events_topic: str = Field("orchestral.events", min_length=1)
    store_topic: str = Field("orchestral.store", min_length=1)
    outcomes_topic: str = Field("orchestral.outcomes", min_length=1)
    dlq_topic: str = Field("orchestral.dlq", min_length=1)
    codec: Literal["json", "avro"] = Field("json", description="Value codec of every output.")

    # --- worker ---
    bootstrap_servers: str = Field(
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
    log_level: str = Field("info", description="Worker log level.")
    connect_timeout: float = Field(30.0, gt=0, description="Seconds to reach the broker at start.")
    progress_interval: float = Field(10.0, gt=0, description="Seconds between progress lines.")

    @property
    def changelog_topic(self) -> str:
        """The thread table's changelog: faust names it `{app id}-{table name}-changelog`."""
        return f"{self.app_id}-{THREAD_TABLE}-changelog"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and overrides); ConfigurationError names a bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "?"
        env = (
            "KAFKA_BOOTSTRAP_SERVERS"
            if field == "bootstrap_servers"
            else ENV_PREFIX + field.upper()
        )
        problems.append(f"{env}: {err['msg']} (got {err.get('input')!r})")
    return "invalid settings: " + "; ".join(problems)
