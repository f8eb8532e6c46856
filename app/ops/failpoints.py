"""Crash points for the crash-safety tests (off unless the environment names one).

``ALERTRELAY_FAILPOINT=after_send_before_mark`` makes the process send
itself SIGKILL (``kill -9``: no cleanup, no flush, no lease release) the
first time it passes that point;
``name:N`` waits for the N-th pass. Production never sets the variable.
"""

import os
import signal
import sys

_ENV = "ALERTRELAY_FAILPOINT"
_passes: dict[str, int] = {}


def failpoint(name: str) -> None:
    spec = os.environ.get(_ENV)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= (int(nth) if nth.isdigit() else 1):
        sys.stderr.write(f"failpoint {name}: exiting\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
