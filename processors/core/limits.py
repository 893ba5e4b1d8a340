"""The runtime's knobs, as one frozen value: what the core reads instead of the settings.

The shell builds it from the environment-backed `Settings` (`processors.worker.handler.
limits_of`); the core never reads the environment, so a replay gives the same output wherever it
runs. The defaults are the contract's (a test holds them equal to the settings' defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.records import canonical_policy_name


@dataclass(frozen=True, slots=True)
class Policy:
    """A concurrency policy with its options resolved."""

    name: str
    max_parallel: int
    max_queue_depth: int


@dataclass(frozen=True, slots=True)
class Limits:
    default_policy: str = "interrupt"
    max_parallel: int = 4  # `parallel`: non-terminal interactions allowed
    max_queue_depth: int = 10  # `queue`: events waiting per thread
    max_interactions_per_thread: int = 10  # non-terminal ones; a start over it is rejected
    auto_cleanup: bool = True  # purge terminal interactions before a start (not `parallel`)
    terminal_retention: int = 100  # terminal interactions kept per thread, oldest purged first
    dedupe_window: int = 1000  # event ids remembered per thread to answer `duplicate`
    replay_buffer: int = 10_000  # outputs of uncommitted records kept per thread
    # Deadlines (contract, "Deadlines (v2)"), in seconds of logical time, 0 = none.
    run_timeout: float = 3600.0  # time `active` (since it last became active)
    idle_timeout: float = 0.0  # time `active` without a heartbeat, output or command
    wait_timeout: float = 0.0  # time `waiting_user` / `waiting_event`
    thread_ttl: float = 0.0  # time an idle thread is kept after its last record
    # The input topic, for the ids derived from a position by `replay`.
    events_topic: str = "orchestral.events"
    # The policy of threads not configured otherwise, resolved once (it is asked per record).
    default: Policy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = str(canonical_policy_name(self.default_policy))
        default = Policy(name, self.max_parallel, self.max_queue_depth)
        object.__setattr__(self, "default", default)
