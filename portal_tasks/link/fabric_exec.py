"""``python -m portal_tasks.link.fabric_exec SSH_CONFIG HOST COMMAND``: run one command over Fabric.

Used for long-lived helper calls (locks, streaming verbs) when the transport is Fabric.
"""

from __future__ import annotations

import sys

from ..config import resolve


def main(argv: list[str]) -> int:
    ssh_config, host, command = argv
    from .fabric import connection, exec_bytes

    conn = connection(resolve(None, host, ssh_config=ssh_config or None, transport="fabric"))
    try:
        rc, out, err = exec_bytes(conn, command)
    finally:
        conn.close()
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
