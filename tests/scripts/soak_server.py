"""The soak's echo server, in a process of its own (so that the test process's RSS,
threads and fds are the pool's alone). Usage: soak_server.py PORT (0: any).

Prints its port, then serves until SIGTERM (graceful stop, 1 s grace) or SIGKILL.
SIGUSR1 makes health checks answer NOT_SERVING, SIGUSR2 SERVING again.
"""

from __future__ import annotations

import signal
import sys
import threading

from grpc_pool.testing.echo import EchoServer


def main() -> None:
    server = EchoServer(port=int(sys.argv[1]), workers=64).start()
    done = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: server.set_serving(False))
    signal.signal(signal.SIGUSR2, lambda *_: server.set_serving(True))
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(server.port, flush=True)
    while not done.wait(0.1):  # signal handlers run between waits
        pass
    server.stop(grace=1.0)


if __name__ == "__main__":
    main()
