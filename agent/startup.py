"""What memagent says while ``langgraph dev`` loads it: one line each, never a traceback.

The server imports memagent's modules while it starts (the auth module when it builds
its middleware, the checkpointer factory in its lifespan). Whoever runs it should see
in one line what memagent uses, and in one line why it cannot start; the server's own
traceback for a setting the user got wrong is 60 lines of its internals.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from typing import NoReturn

PREFIX = "memagent: "
"""Starts every line memagent writes to the server's output, so it can be found."""


def announce(line: str) -> None:
    """Writes one line to the server's output (stderr, unbuffered, beside its logs)."""
    print(f"{PREFIX}{line}", file=sys.stderr, flush=True)


def refuse_to_start(reason: str) -> NoReturn:
    """Stops the server process with one line saying why, and exit status 1.

    Under auto-reload (the default of ``langgraph dev``) the server runs in a child
    that uvicorn's reloader spawns, and the reloader only watches files: when the
    child exits it stays alive with nothing listening. So a child of uvicorn's
    supervisor asks it to stop, exactly as Ctrl-C would, after the line is written.
    """
    announce(reason)
    supervisor = multiprocessing.parent_process()
    if supervisor is not None and supervisor.pid and "uvicorn._subprocess" in sys.modules:
        os.kill(supervisor.pid, signal.SIGTERM)
    raise SystemExit(1)
