"""Exit codes of `orchestral-stream`, for supervisors and scripts (README, "Exit codes").

Small numbers are this project's own; the rest come from sysexits.h, so a supervisor can tell a
mistake to fix (64, 65, 66) from a condition that may pass (2, 75).
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
FAILED: Final = 1  # a command failed for another reason (the message says why)
NOT_FOUND: Final = FAILED  # `thread` / `history`: no such thread
UNREACHABLE: Final = 2  # the cluster did not answer within ORCHESTRAL_CONNECT_TIMEOUT
REFUSED: Final = 3  # the cluster refused our SASL credentials or the TLS handshake
REJECTED: Final = 4  # `send --wait`: the worker answered `rejected` (busy, full, unknown id)
USAGE: Final = 64  # EX_USAGE: a bad flag or invalid settings (the message names which)
DATA_ERROR: Final = 65  # EX_DATAERR: a record the worker would refuse (or answered `invalid`)
NO_INPUT: Final = 66  # EX_NOINPUT: `send` read no record from stdin: nothing was sent
UNAVAILABLE: Final = 69  # EX_UNAVAILABLE: the web/metrics port is in use (another worker?)
INTERNAL_ERROR: Final = 70  # EX_SOFTWARE: the worker itself failed on a record
CANNOT_CREATE: Final = 73  # EX_CANTCREAT: ORCHESTRAL_DATA_DIR cannot be created
# EX_TEMPFAIL, try again: `send --wait` got no outcome in time (is a worker running?); the
# worker: the cluster or the events topic changed under it (its restart discards the local
# state), or it did not stop within 10 s of SIGTERM.
TEMPFAIL: Final = 75
TIMEOUT: Final = TEMPFAIL
INTERRUPTED: Final = 130  # Ctrl+C (128 + SIGINT)
