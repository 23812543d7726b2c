"""``run --processes N``: N bridge processes of one configuration, kept running.

The supervisor is the process systemd (or a terminal) sees. It starts each child as
``run --processes N --process-index I`` (so a child is what a
``grillstats-bridge@I.service`` instance runs), forwards SIGTERM, SIGINT and SIGHUP
to them, and restarts a child that dies while the others run on (one log line, a
back-off from ``MIN_BACKOFF_S`` doubling to ``MAX_BACKOFF_S``, back to the minimum
once a child has run ``STABLE_S``). A child that exits before it was ever ready ends
the whole run: the configuration, the database or the broker keeps every child from
starting, and restarting them would only repeat the error line.

Each child speaks systemd's notify protocol to the supervisor, on a socket of its
own (``NOTIFY_SOCKET``): READY=1 once it polls, WATCHDOG=1 while it is not stuck.
The supervisor tells systemd READY=1 when every child is ready, and pings systemd's
watchdog while every ready child pings it; a child that stops pinging is killed and
restarted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from grillstats_bridge.bridge.sdnotify import Notifier

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
STABLE_S = 60.0  # a child that ran this long starts its next back-off from the minimum
STOP_TIMEOUT_S = 15.0  # after SIGTERM; then SIGKILL (the unit's TimeoutStopSec is 20 s)
TICK_S = 5.0  # longest wait of the loop without a signal, a child's exit or a message


def next_backoff(current: float, ran_for: float) -> tuple[float, float]:
    """(this restart's delay, the next one's) for a child that ran ``ran_for`` seconds."""
    delay = MIN_BACKOFF_S if ran_for >= STABLE_S else current
    return delay, min(delay * 2, MAX_BACKOFF_S)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class Child:
    index: int
    notify: socket.socket  # the child's NOTIFY_SOCKET, kept across its restarts
    address: str
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False  # this run of the child said READY=1
    ever_ready: bool = False
    backoff: float = MIN_BACKOFF_S
    restart_at: float | None = None
    last_ping: float = 0.0
    codes: list[int] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Runs ``command(index)`` for each of ``count`` children until told to stop."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        count: int,
        *,
        notifier: Notifier | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.command = command
        self.notifier = notifier or Notifier()
        self.environ = dict(os.environ if environ is None else environ)
        tag = uuid.uuid4().hex[:8]
        self.children: list[Child] = []
        for index in range(count):
            name = f"grillstats-bridge-{os.getpid()}-{tag}-{index}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.bind("\0" + name)  # abstract: no file to clean up, none left by a crash
            sock.setblocking(False)
            self.children.append(Child(index, sock, "@" + name))
        self.failed: str | None = None  # why the run ends non-zero
        self._stop_signal: int | None = None
        self._reload = False
        self._stopping = False
        self._stop_deadline = 0.0
        self.started = False  # every child was ready at least once
        self._last_ping = 0.0

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Start the children, keep them running, stop them; 0 when all stopped cleanly."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous = {
            s: signal.signal(s, self._on_signal)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        }
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        try:
            for child in self.children:
                self._spawn(child)
            while self._step():
                self._wait(wake_r)
        finally:
            for child in self.children:  # an exception of ours must not leave orphans
                if child.alive:
                    assert child.proc is not None
                    child.proc.kill()
                    child.proc.wait()
            signal.set_wakeup_fd(old_wakeup)
            for s, handler in previous.items():
                signal.signal(s, handler)
            wake_r.close()
            wake_w.close()
            for child in self.children:
                child.notify.close()
        if self.failed:
            return 1
        return 0 if all(c.codes[-1:] in ([0], []) for c in self.children) else 1

    def _stopped_cleanly(self, code: int) -> bool:
        # Killed by our SIGTERM (or the terminal's SIGINT) before it had set up its
        # handlers: it was still starting and had nothing to lose.
        return code in (0, -signal.SIGTERM, -signal.SIGINT)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags: the loop (woken by the wakeup fd) does the work and the logging.
        if signum == signal.SIGHUP:
            self._reload = True
        elif signum != signal.SIGCHLD and self._stop_signal is None:
            self._stop_signal = signum

    def _step(self) -> bool:
        """One pass: signals, exits, restarts, readiness, the watchdog; False when done."""
        now = time.monotonic()
        if self._stop_signal is not None and not self._stopping:
            log.info(
                "%s received: stopping %d processes",
                signal.Signals(self._stop_signal).name,
                sum(c.alive for c in self.children),
            )
            self.stop()
        if self._reload:
            self._reload = False
            live = [c for c in self.children if c.alive]
            log.info("SIGHUP received: passed on to %d processes", len(live))
            for child in live:
                self._signal(child, signal.SIGHUP)
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                self._exited(child, child.proc.returncode, now)
        if self._stopping:
            if not any(c.alive for c in self.children):
                return False
            if now >= self._stop_deadline:
                for child in self.children:
                    if child.alive:
                        log.error("process %d did not stop in time: killing it", child.index)
                        self._signal(child, signal.SIGKILL)
                self._stop_deadline = now + STOP_TIMEOUT_S
            return True
        for child in self.children:
            if child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
        if not self.started and all(c.ready for c in self.children):
            self.started = True
            log.info("all %d processes ready", len(self.children))
            self.notifier.ready(f"{len(self.children)} processes running")
        self._watchdog(now)
        return True

    @property
    def any_ready(self) -> bool:
        """Some child was ready once: the bridge's status on the broker was ours to set."""
        return any(c.ever_ready for c in self.children)

    def stop(self) -> None:
        """SIGTERM to every child; the loop waits for them (then SIGKILL)."""
        self._stopping = True
        self._stop_deadline = time.monotonic() + STOP_TIMEOUT_S
        self.notifier.stopping()
        for child in self.children:
            child.restart_at = None
            if child.alive:
                self._signal(child, signal.SIGTERM)

    def _wait(self, wake: socket.socket) -> None:
        now = time.monotonic()
        timeout = TICK_S
        for child in self.children:
            if child.restart_at is not None:
                timeout = min(timeout, child.restart_at - now)
        interval = self.notifier.watchdog_interval
        if interval:
            timeout = min(timeout, interval)
        if self._stopping:
            timeout = min(timeout, self._stop_deadline - now)
        sockets = [wake, *(c.notify for c in self.children)]
        readable, _, _ = select.select(sockets, [], [], max(0.0, timeout))
        if wake in readable:
            with contextlib.suppress(BlockingIOError):
                wake.recv(4096)
        for child in self.children:
            if child.notify in readable:
                self._messages(child)

    # ------------------------------------------------------------------ children

    def _spawn(self, child: Child) -> None:
        child.restart_at = None
        child.ready = False
        env = {**self.environ, "NOTIFY_SOCKET": child.address}
        env.pop("WATCHDOG_PID", None)  # the child's pid is not known before it starts
        if self.notifier.watchdog_interval is None:
            env.pop("WATCHDOG_USEC", None)
        try:
            child.proc = subprocess.Popen(list(self.command(child.index)), env=env)
        except OSError as exc:
            self.failed = f"cannot start process {child.index}: {exc.strerror or exc}"
            self.stop()
            return
        child.started = child.last_ping = time.monotonic()

    def _exited(self, child: Child, code: int, now: float) -> None:
        assert child.proc is not None
        pid = child.proc.pid
        child.proc = None
        child.codes.append(0 if self._stopping and self._stopped_cleanly(code) else code)
        child.ready = False
        if self._stopping:
            if not self._stopped_cleanly(code):
                log.warning(
                    "process %d (pid %d) %s while stopping", child.index, pid, describe_exit(code)
                )
            return
        if not child.ever_ready:
            # The child said why (its one error line); the run ends with the supervisor's.
            self.failed = f"process {child.index} {describe_exit(code)} before it was ready"
            self.stop()
            return
        delay, child.backoff = next_backoff(child.backoff, now - child.started)
        child.restart_at = now + delay
        log.warning(
            "process %d (pid %d) %s after %.0f s; restarting it in %.0f s",
            child.index,
            pid,
            describe_exit(code),
            now - child.started,
            delay,
        )

    def _signal(self, child: Child, signum: int) -> None:
        if child.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signum)

    def _messages(self, child: Child) -> None:
        while True:
            try:
                data = child.notify.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            fields = dict(
                line.partition("=")[::2] for line in data.decode(errors="replace").splitlines()
            )
            if not child.alive:
                continue  # a late word from a child that has exited
            if fields.get("READY") == "1" and not child.ready:
                child.ready = child.ever_ready = True
                if child.codes:
                    log.info(
                        "process %d ready again (pid %s)",
                        child.index,
                        child.proc and child.proc.pid,
                    )
            if fields.get("WATCHDOG") == "1" or fields.get("READY") == "1":
                child.last_ping = time.monotonic()

    def _watchdog(self, now: float) -> None:
        interval = self.notifier.watchdog_interval
        if not interval:
            return
        for child in self.children:
            # A child pings at half of WatchdogSec (= interval); four missed pings: stuck.
            if child.ready and child.alive and now - child.last_ping > 4 * interval:
                log.error(
                    "process %d (pid %d) stopped pinging the watchdog: killing it",
                    child.index,
                    child.proc.pid if child.proc else 0,
                )
                self._signal(child, signal.SIGKILL)
        if now - self._last_ping >= interval:
            self._last_ping = now
            self.notifier.watchdog()
