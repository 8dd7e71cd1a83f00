"""A worker process of ``ultrathink serve --workers N``: ``python -m ultrathink.serving.worker``.

Its one argument is the inherited listening socket's file descriptor.

Reads its options as JSON on stdin (the API key is never on the command line or in the
environment), serves on the inherited listening socket ``FD``, prints ``ready`` on stdout
once its models are warm, and drains on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import sys


def main() -> int:
    # Ctrl-C reaches the whole process group; the parent forwards it as SIGTERM. Until the
    # loop installs its handlers, an interrupt must not end this worker with a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import uvloop

    from ultrathink.serving.server import options_from_json, run_worker

    options = options_from_json(sys.stdin.read())
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(False)

    def ready() -> None:
        print("ready", flush=True)

    return uvloop.run(run_worker(options, sock, ready, parent=os.getppid()))


if __name__ == "__main__":
    sys.exit(main())
