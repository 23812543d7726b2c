"""Which bridge process this is, when several share one database and one broker.

``run`` is process 0 of 1. ``run --processes N`` starts N children, each with its
index; each has its own run id, so two machines running the same configuration
still tell their processes apart. ``process_id`` names a process in the database
(the owner of its account leases) and on the broker (its client id and will).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProcessIdentity:
    index: int = 0  # 0 .. count-1 on this machine
    count: int = 1  # processes started together by one `run --processes N`
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @property
    def process_id(self) -> str:
        """Unique per running process: ``<host>-<index>-<8 hex of the run id>``."""
        return f"{self.host}-{self.index}-{self.run_id[:8]}"

    @property
    def several(self) -> bool:
        return self.count > 1
