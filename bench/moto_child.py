"""Child process entry: a moto server on 127.0.0.1 (ephemeral port) until stdin closes.

Prints ``PORT <n>`` once listening. Run by :mod:`bench.localstack`, in its own process so moto's
CPU work (its SQS receive cost grows with queue depth) never competes with the bench for one GIL.
"""

from __future__ import annotations

import sys


def main() -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(f"PORT {port}", flush=True)
    try:
        sys.stdin.read()  # the parent closes our stdin (or dies) to stop us
    finally:
        server.stop()


if __name__ == "__main__":
    main()
