"""Exit codes of `orchestral-stream`, for supervisors and scripts (README, "Operation")."""

from __future__ import annotations

from typing import Final

UNREACHABLE: Final = 2  # the cluster did not answer within ORCHESTRAL_CONNECT_TIMEOUT
REFUSED: Final = 3  # the cluster refused our SASL credentials or the TLS handshake
USAGE: Final = 64  # EX_USAGE: invalid settings (a TLS file that cannot be loaded, say)
UNAVAILABLE: Final = 69  # EX_UNAVAILABLE: the web/metrics port is in use (another worker?)
INTERNAL_ERROR: Final = 70  # EX_SOFTWARE: the worker itself failed on a record
CANNOT_CREATE: Final = 73  # EX_CANTCREAT: ORCHESTRAL_DATA_DIR cannot be created
