"""Failpoints: named places where a test can make the process die on purpose, to prove that a
crash there loses nothing. Off unless ACH_FAILPOINT names the place (never set in deployments)."""

from __future__ import annotations

import os

from ach_platform.settings import active_failpoint


def failpoint(name: str) -> None:
    if active_failpoint() == name:
        # Like SIGKILL: no cleanup, no flush, no graceful anything.
        os._exit(137)
