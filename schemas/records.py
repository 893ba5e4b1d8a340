"""Every record of the wire contract (`shared/docs/contract.md`), as pydantic models.

Input records (on `orchestral.events`): the five seed event types and `command`. They are
validated once at the edge, by `parse_input`, into these immutable models; the core reads them.
Output records (`orchestral.store`, `orchestral.outcomes`) are built by the core as plain dicts in
wire field order; `StoredEvent`, `Outcome` and `InteractionRecord` document and check that shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from schemas import timestamps
from schemas.errors import DecodeError

# --- policies -------------------------------------------------------------------------------

PolicyName: TypeAlias = Literal["interrupt", "reject", "parallel", "merge", "queue", "rollback"]
POLICY_NAMES: Final[tuple[str, ...]] = (
    "interrupt",
    "reject",
    "parallel",
    "merge",
    "queue",
    "rollback",
)
# The seed's config names and LangGraph's `multitask_strategy` names.
POLICY_ALIASES: Final[dict[str, str]] = {
    "interrupt_and_start_new": "interrupt",
    "reject_when_busy": "reject",
    "steer": "merge",
    "enqueue": "queue",
}


def canonical_policy_name(value: object) -> object:
    """Map an alias to its policy name; leave anything else for the Literal check to reject."""
    return POLICY_ALIASES.get(value, value) if isinstance(value, str) else value


class PolicySpec(BaseModel):
    """A concurrency policy by name, with the options that name takes.

    On the wire either a bare name (`"queue"`) or an object
    (`{"name": "queue", "max_queue_depth": 3}`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: Annotated[PolicyName, BeforeValidator(canonical_policy_name)]
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    max_queue_depth: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


# --- input events ---------------------------------------------------------------------------


def _timestamp(value: object) -> str:
    try:
        return timestamps.normalize(value)
    except DecodeError as exc:  # pydantic reports ValueErrors with the field's location
        raise ValueError(exc.reason) from None


Timestamp = Annotated[str, BeforeValidator(_timestamp)]
NonEmpty = Annotated[str, Field(min_length=1)]

# The seed's serde field order, per event type (after `type`). Stored events append seq, event_id.
EVENT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "user_input": (
        "thread_id", "interaction_id", "payload", "task_id", "step_id", "timestamp",
    ),
    "assistant_output": (
        "thread_id", "interaction_id", "payload", "task_id", "step_id", "timestamp",
    ),
    "artifact": (
        "thread_id", "interaction_id", "reference_id", "task_id", "step_id", "timestamp",
    ),
    "external_event": (
        "thread_id", "interaction_id", "kind", "payload", "task_id", "step_id", "timestamp",
    ),
    "system_trace": (
        "thread_id", "interaction_id", "level", "payload", "task_id", "step_id", "timestamp",
    ),
}  # fmt: skip
EVENT_TYPES: Final[tuple[str, ...]] = tuple(EVENT_FIELDS)


class _InputEvent(BaseModel):
    """Fields shared by the five event types, plus the contract's optional extensions."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    thread_id: NonEmpty
    # Absent or null on input for every type: upstream does not know it yet.
    interaction_id: str | None = None
    task_id: str | None = None
    step_id: str | None = None
    timestamp: Timestamp
    event_id: NonEmpty | None = None
    concurrency: PolicySpec | None = None
    expected_interaction_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _concurrency_options(cls, value: Any) -> Any:
        # `"concurrency": "queue", "max_queue_depth": 3` is the flat form of the same override.
        if isinstance(value, dict) and isinstance(value.get("concurrency"), str):
            spec: dict[str, Any] = {"name": value["concurrency"]}
            for option in ("max_parallel", "max_queue_depth"):
                if value.get(option) is not None:
                    spec[option] = value[option]
            value = {**value, "concurrency": spec}
        return value

    def store_fields(self) -> dict[str, Any]:
        """The seed-shaped event, in wire order, as it is stored (before stamping)."""
        values = self.__dict__  # the validated fields, read without attribute lookups
        kind = values["type"]
        out: dict[str, Any] = {"type": kind}
        for name in EVENT_FIELDS[kind]:
            out[name] = values[name]
        return out


class UserInput(_InputEvent):
    type: Literal["user_input"]
    payload: Any = Field(...)  # required key; JSON null passes schema, the core answers invalid


class AssistantOutput(_InputEvent):
    type: Literal["assistant_output"]
    payload: Any = Field(...)


class Artifact(_InputEvent):
    type: Literal["artifact"]
    reference_id: str


class ExternalEvent(_InputEvent):
    type: Literal["external_event"]
    kind: str
    payload: Any = Field(...)


class SystemTrace(_InputEvent):
    type: Literal["system_trace"]
    level: str
    payload: Any = Field(...)


Event: TypeAlias = UserInput | AssistantOutput | Artifact | ExternalEvent | SystemTrace

# --- commands -------------------------------------------------------------------------------

CommandName: TypeAlias = Literal[
    "complete", "fail", "cancel", "wait_user", "wait_event", "pause", "resume",
    "add_task", "cancel_all", "configure", "heartbeat", "expire", "delete_thread",
]  # fmt: skip
# Commands that address one interaction (the rest address the thread; `expire` either).
INTERACTION_COMMANDS: Final[frozenset[str]] = frozenset(
    {
        "complete", "fail", "cancel", "wait_user", "wait_event", "pause", "resume", "add_task",
        "heartbeat",
    }
)  # fmt: skip
# Why a deadline fired (contract, "Deadlines (v2)"): the limit that ran out.
ExpireReason: TypeAlias = Literal["run_timeout", "idle_timeout", "wait_timeout", "thread_ttl"]
EXPIRE_REASONS: Final[tuple[str, ...]] = (
    "run_timeout",
    "idle_timeout",
    "wait_timeout",
    "thread_ttl",
)
# The longest `reason` a `fail` command may give (an error message, not a traceback dump).
MAX_FAIL_REASON: Final = 1000
# A duration in seconds, 0 = none; finite (a NaN would make every comparison false).
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Command(BaseModel):
    """An executor's instruction about one interaction, or about the whole thread."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    type: Literal["command"]
    command: CommandName
    thread_id: NonEmpty
    interaction_id: str | None = None
    event_id: NonEmpty | None = None
    timestamp: Timestamp
    kind: str | None = None  # wait_event: the external event kind that resumes it
    task_id: str | None = None  # add_task
    # configure
    policy: PolicySpec | None = None
    max_interactions_per_thread: Annotated[int, Field(ge=1)] | None = None
    auto_cleanup: bool | None = None
    # configure: the thread's deadlines from now on (seconds, 0 = none; None = the default)
    run_timeout: Seconds | None = None
    idle_timeout: Seconds | None = None
    wait_timeout: Seconds | None = None
    thread_ttl: Seconds | None = None
    timeout: Seconds | None = None  # wait_user, wait_event: this wait's wait_timeout
    # expire (produced by the worker's deadline timer): which deadline, and when it was due;
    # fail: why, in the executor's words (its `failed` interaction record carries it)
    reason: Annotated[str, Field(max_length=MAX_FAIL_REASON)] | None = None
    deadline: Timestamp | None = None

    @model_validator(mode="after")
    def _required_per_command(self) -> Command:
        if self.command in INTERACTION_COMMANDS and self.interaction_id is None:
            raise ValueError(f"command `{self.command}` needs `interaction_id`")
        if self.command == "add_task" and self.task_id is None:
            raise ValueError("command `add_task` needs `task_id`")
        if self.reason is not None and self.command not in ("fail", "expire"):
            raise ValueError("`reason` is for `fail` and `expire` only")
        if self.command == "expire":
            if self.reason is None or self.deadline is None:
                raise ValueError("command `expire` needs `reason` and `deadline`")
            if self.reason not in EXPIRE_REASONS:
                raise ValueError(
                    f"command `expire` needs `reason` one of {', '.join(EXPIRE_REASONS)}"
                )
            if (self.reason == "thread_ttl") != (self.interaction_id is None):
                raise ValueError(
                    "command `expire` needs `interaction_id` unless its reason is `thread_ttl`, "
                    "which has none"
                )
        if self.timeout is not None and self.command not in ("wait_user", "wait_event"):
            raise ValueError("`timeout` is for `wait_user` and `wait_event` only")
        return self


InputRecord: TypeAlias = Annotated[
    UserInput | AssistantOutput | Artifact | ExternalEvent | SystemTrace | Command,
    Field(discriminator="type"),
]
INPUT_TYPES: Final[tuple[str, ...]] = (*EVENT_TYPES, "command")
_INPUT_ADAPTER: TypeAdapter[Event | Command] = TypeAdapter(InputRecord)

# --- output records -------------------------------------------------------------------------

InteractionState: TypeAlias = Literal[
    "active", "waiting_user", "waiting_event", "paused", "completed", "failed", "cancelled"
]
TERMINAL_STATES: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})
OutcomeStatus: TypeAlias = Literal[
    "started", "resumed", "merged", "queued", "rejected", "appended", "applied", "invalid",
    "duplicate",
]  # fmt: skip


class StoredEvent(BaseModel):
    """One record of `orchestral.store`: the seed's event, stamped, plus `seq` and `event_id`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["user_input", "assistant_output", "artifact", "external_event", "system_trace"]
    thread_id: str
    interaction_id: str | None
    payload: Any = None
    reference_id: str | None = None
    kind: str | None = None
    level: str | None = None
    task_id: str | None
    step_id: str | None
    timestamp: str
    seq: Annotated[int, Field(ge=1)]
    event_id: str


class Outcome(BaseModel):
    """Exactly one per input record, on `orchestral.outcomes`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["outcome"]
    thread_id: str
    source_event_id: str | None
    status: OutcomeStatus
    interaction_id: str | None
    reason: str | None
    queue_position: int | None
    timestamp: str | None


class InteractionRecord(BaseModel):
    """One per interaction state change, on `orchestral.outcomes`.

    `rolled_back` extends the contract's shape: true on the `cancelled` record of an interaction
    cancelled by the `rollback` policy, whose events history readers then leave out.
    `reason`: on a `failed` record, the limit that ran out (`run_timeout`, `idle_timeout`,
    `wait_timeout`) or the reason its `fail` command gave; null otherwise.
    `event`: on a transition to `active`, the stored record that caused it; null otherwise.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["interaction"]
    thread_id: str
    interaction_id: str
    state: InteractionState
    previous_state: InteractionState | None
    cause_event_id: str
    timestamp: str
    rolled_back: bool = False
    reason: str | None = None
    event: StoredEvent | None = None


# --- validation at the edge -----------------------------------------------------------------


def parse_input(value: Any) -> Event | Command:
    """Validate one decoded input value; raise DecodeError with a seed-style reason."""
    if not isinstance(value, dict):
        raise DecodeError(f"input record must be a JSON object, got {type(value).__name__}")
    kind = value.get("type")
    if kind not in INPUT_TYPES:
        if kind is None:
            raise DecodeError("missing field `type`", thread_id=_thread_id_of(value))
        raise DecodeError(
            f"unknown variant `{str(kind)[:64]}`, expected one of {', '.join(INPUT_TYPES)}",
            thread_id=_thread_id_of(value),
        )
    try:
        return _INPUT_ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise DecodeError(_describe(exc), thread_id=_thread_id_of(value)) from None


def _thread_id_of(value: dict[str, Any]) -> str | None:
    thread_id = value.get("thread_id")
    return thread_id if isinstance(thread_id, str) and thread_id else None


def _describe(exc: ValidationError) -> str:
    """The first error, in the seed's words where it has them ("missing field `payload`")."""
    err = exc.errors(include_url=False)[0]
    # Drop the discriminator tag pydantic puts first in the location of a union member.
    loc = [str(p) for p in err["loc"] if p not in INPUT_TYPES]
    field = ".".join(loc) or "record"
    if err["type"] == "missing":
        return f"missing field `{field}`"
    message = str(err["msg"]).removeprefix("Value error, ")
    # A model-level rule has no location: its message names the fields itself.
    return f"invalid `{field}`: {message}" if loc else message
