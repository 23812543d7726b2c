"""The daemon: the only place that wires the cloud, the database and MQTT together.

Threads, and what each owns:

* the caller's thread (:meth:`Bridge.run`): the schedule. It hands accounts that
  are due to the poll workers, notices linked, relinked and unlinked accounts,
  pings systemd's watchdog, and stops on request.
* poll workers (``polling.workers``): one cloud poll each at a time, so a slow
  or failing account never holds up the others. A worker publishes the devices'
  states as soon as its poll is in (they need no database: the publisher has its
  own lock), then queues the poll for the pipeline thread.
* the pipeline thread: every finished poll, in order. It runs the poll through the
  database (:mod:`pipeline`), then publishes what that produced (session
  changes, alert firings from the outbox). Commands from Home Assistant run on
  this thread too (:meth:`Bridge.submit`), so the session and alert services
  are only ever used from one thread.
* the MQTT client's threads and the health server's, which own nothing of ours.

Tests drive the same code without threads: :meth:`Bridge.start` with
``threads=False``, then :meth:`Bridge.step` after moving the clock.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from grillstats_bridge import __version__
from grillstats_bridge.alerts.engine import Firing
from grillstats_bridge.alerts.entities import AlertControl, describe_firing, publish_firing
from grillstats_bridge.alerts.service import AlertService
from grillstats_bridge.bridge import status
from grillstats_bridge.bridge.health import Server, serve_http
from grillstats_bridge.bridge.identity import ProcessIdentity
from grillstats_bridge.bridge.leases import LeaseChange, LeaseKeeper, owned_serials, rescope
from grillstats_bridge.bridge.outbox import Outbox
from grillstats_bridge.bridge.owners import Owners
from grillstats_bridge.bridge.pipeline import Outcome, Pipeline, describe
from grillstats_bridge.bridge.poller import AccountPoller, say_poll_failure
from grillstats_bridge.bridge.processes import (
    adopt_orphaned_journals,
    journal_file,
    mqtt_identity,
    shared_status,
)
from grillstats_bridge.bridge.requests import BridgeRequests
from grillstats_bridge.bridge.scheduler import AccountState, Activity, Scheduler
from grillstats_bridge.bridge.sdnotify import Notifier
from grillstats_bridge.bridge.status import AccountInfo, Stats
from grillstats_bridge.bridge.work import PollJob, WorkQueue, gated, stuck
from grillstats_bridge.clock import Clock, RealClock
from grillstats_bridge.config import Config, split_reload
from grillstats_bridge.cook.entities import CookEvents, publish_cook
from grillstats_bridge.cook.events import StoredEvent
from grillstats_bridge.cook.model import Estimate
from grillstats_bridge.cook.service import CookService
from grillstats_bridge.domain import Poll
from grillstats_bridge.ha.entities import TABLE, BridgeStatus
from grillstats_bridge.ha.publisher import Publisher, naming_for
from grillstats_bridge.mqtt.claim import InstanceClaim
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.messages import InboundMessage
from grillstats_bridge.sessions.entities import EndedEvent, SessionMqtt, mark_ended_published
from grillstats_bridge.sessions.model import ChangeKind
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store import revisions, users
from grillstats_bridge.store.accounts import CredentialState, link_states
from grillstats_bridge.store.db import Database, safe_url
from grillstats_bridge.store.journal import Journal, OwnedReading
from grillstats_bridge.store.publications import PublicationStore
from grillstats_bridge.store.readings import ReadingBuffer, prune_readings, retention_cutoff
from grillstats_bridge.store.secrets import SecretBox
from grillstats_bridge.thermoworks.errors import CloudError

log = logging.getLogger(__name__)

ACCOUNTS_REFRESH_S = 30.0  # how often linked / relinked / unlinked accounts are noticed
HOUSEKEEPING_S = 60.0  # session timeouts, device availability, outbox retries
PRUNE_EVERY_S = 3600.0
MAX_TICK_S = 1.0  # the schedule loop wakes at least this often (stop requests, watchdog)
MAX_POLLS_PER_TRANSACTION = 50
# Jobs waiting for the pipeline thread beyond which no new poll starts: when the database
# or the CPU cannot keep up, accounts wait (due) instead of stale polls piling up in memory
# (each holds its decoded answers). One transaction's worth: a saturated bridge at 1,000
# devices takes 30-40 polls per transaction (with 20 it did 692 readings/s, with 50 1,116),
# and polls running count too (at a start all accounts are due at once).
MAX_POLL_BACKLOG = MAX_POLLS_PER_TRANSACTION
# MQTT commands waiting for the pipeline thread: beyond this the MQTT client's dispatcher
# waits, so its bounded inbound queue fills and drops instead of this one growing.
MAX_PENDING_COMMANDS = 100
STUCK_S = 120.0  # /health says the pipeline is failing when one job has run this long
PIPELINE_GRACE_S = 12.0  # at a stop, beyond the timeout: a PostgreSQL connect takes 10 s


class Bridge:
    """The long-running service: build it, :meth:`start`, :meth:`run` until stopped."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        database: Database | None = None,
        notifier: Notifier | None = None,
        http: requests.Session | None = None,
        rng: random.Random | None = None,
        identity: ProcessIdentity | None = None,
    ) -> None:
        self.config = config
        self.identity = identity or ProcessIdentity()
        self.clock: Clock = clock or RealClock()
        self._own_database = database is None
        self.database = database or Database(config.database)
        self.notifier = notifier or Notifier()
        self._http = http
        self._rng = rng or random.Random()
        self._commands = threading.BoundedSemaphore(MAX_PENDING_COMMANDS)
        self.box = SecretBox.from_config(config.security, database=self.database)
        self.scheduler = Scheduler(config.polling, self._rng)
        self.buffer: ReadingBuffer[OwnedReading] = ReadingBuffer(config.storage.buffer_size)
        self.sessions = SessionService(config.sessions)
        self.alerts = AlertService(config.alerts)
        self.leases = LeaseKeeper(
            self.database,
            self.identity,
            instance_id=config.mqtt.instance_id,
            lease_time=config.database.lease_time,
            clock=self.clock.now,
        )
        self.pipeline = Pipeline(
            self.database,
            sessions=self.sessions,
            alerts=self.alerts,
            buffer=self.buffer,
            journal=Journal(journal_file(config, self.identity)),
            cook=CookService(config.cook),
            fence=self.leases.fence if self.leases.enabled else None,
        )
        on_broker = mqtt_identity(config, self.identity)
        self.mqtt = MqttClient(
            config.mqtt,
            status_topic=on_broker.status_topic,  # the will, online, offline
            client_id=on_broker.client_id,
            clock=self.clock.now,
        )
        self.publisher = Publisher(
            self.mqtt,
            config.mqtt,
            store=PublicationStore(self.database, config.mqtt.instance_id),
            table=TABLE,
            clock=self.clock.now,
            rng=self._rng,
            configuration_url=config.http.public_url or None,
            holder_topic=on_broker.status_topic if self.identity.several else None,
        )
        self.publisher.writes_bridge = lambda: self.leases.leads  # the instance's first process
        self.alert_control = AlertControl(
            self.database, self.alerts, self.publisher, accounts=self.leases.accounts
        )
        # Events go out at least once, read from their tables (alert firings, sessions, cooks).
        outbox = partial(
            Outbox, database=self.database, client=self.mqtt, post=self.submit, clock=self.clock.now
        )
        self.alert_outbox: Outbox[Firing] = outbox(
            "alert",
            pending=self._pending_firings,
            send=lambda firing, done: publish_firing(self.publisher, firing, on_done=done),
            mark=self.alerts.mark_published,
        )
        self.on_command(self.alert_control.command_filter, self.alert_control.handle)
        naming = naming_for(config.mqtt)
        self.instance = InstanceClaim(
            self.mqtt,
            config.mqtt,
            root=naming.root,
            status_topic=naming.status_topic,
            started=self.clock.now().isoformat(timespec="seconds"),
            bridge=on_broker.bridge_key,
        )
        self.mqtt.add_connect_hook(self._on_mqtt_connect)
        self.presence = shared_status(config, self.identity)  # several: <root>/status
        self.session_mqtt = SessionMqtt(
            database=self.database,
            service=self.sessions,
            publisher=self.publisher,
            clock=self.clock.now,
            on_ended=self._session_ended,
            accounts=self.leases.accounts,
        )
        self.session_outbox: Outbox[EndedEvent] = outbox(
            "session",
            pending=self.session_mqtt.pending_events,
            send=self.session_mqtt.send_event,
            mark=mark_ended_published,
        )
        cook = CookEvents(self.publisher, self.leases.accounts)  # the cook_events table
        self.cook_outbox: Outbox[StoredEvent] = outbox(
            "cook", pending=cook.pending, send=cook.send, mark=cook.mark
        )
        self.outboxes = (self.alert_outbox, self.session_outbox, self.cook_outbox)
        self.session_mqtt.subscribe(self.on_command)
        self.requests = BridgeRequests(self)  # <root>/bridge/request/<action>
        self.health_server: Server | None = None
        self.pollers: dict[int, AccountPoller] = {}
        self.accounts: dict[int, AccountInfo] = {}
        self.stats = Stats()
        self.started_at = self.clock.now()
        self._lock = threading.RLock()  # scheduler, pollers, accounts
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._jobs: queue.Queue[int | None] = queue.Queue()
        self.work = WorkQueue(
            self._process_polls,
            max_batch=MAX_POLLS_PER_TRANSACTION,
            on_batch=self._wake.set,  # room in the backlog: due accounts may be polled
            on_error=self.stats.note_pipeline_error,
        )
        self._threads: list[threading.Thread] = []
        self._threaded = False
        self._active: dict[int, bool] = {}
        self._activity = Activity()
        self._next_accounts_refresh = self.clock.now()
        self._next_housekeeping = self.clock.now()
        self._next_prune = self.clock.now()
        self._last_success: datetime | None = None
        self._nicknames: dict[int, dict[str, str]] = {}
        self.owners = Owners()  # a poll publishes only the devices its account owns
        self._manual_clock = getattr(self.clock, "speed", 1.0) == 0
        self.lost = 0  # buffered readings the stop could not keep (run exits non-zero)
        self.stopped = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, threads: bool = True) -> None:
        """Check the database, connect the broker, start the workers (or not, for tests)."""
        revisions.require_head(self.database)
        self.instance.check()  # before connecting: two bridges on one client id fight
        self._threaded = threads
        self.leases.tick(self.clock.now())  # first: the accounts this process polls
        with self.database.transaction() as db:
            self.sessions.load(db, self.clock.now(), owned_serials(db, self.leases.accounts()))
            self.owners.load(db)
        self.session_mqtt.changed([])  # the sessions that run on: their state from the start
        self._refresh_accounts(self.clock.now())
        self.mqtt.start()
        if self.presence is not None:
            self.presence.start()
        adopt_orphaned_journals(self.config, self.identity, self.pipeline.journal)
        replay = self.pipeline.replay_journal(self.clock.now())  # before any new poll
        if replay is not None:
            self._after_commit(replay)
        if self.config.http.enabled:
            self.health_server = serve_http(
                self.config, self.database, self.health_report, self.clock.now, self.estimates
            )
            self.health_server.start()
        if threads:
            for n in range(self.config.polling.workers):
                self._spawn(f"poll-{n}", self._poll_worker)
            self._spawn("pipeline", self._pipeline_worker)
        self._publish_bridge()
        self.requests.publish_info()
        server = self.health_server
        log.info(
            "bridge %s started: database %s, broker %s:%d, health %s, %d linked account(s)",
            __version__,
            safe_url(self.database.url),
            self.config.mqtt.host,
            self.config.mqtt.port,
            server.url if server is not None else "off (http.enabled: false)",
            len(self.pollers),
        )

    def run(self) -> None:
        """The schedule loop, until :meth:`request_stop`; then a clean shutdown."""
        self.notifier.ready(f"polling {len(self.pollers)} account(s)")
        next_watchdog = time.monotonic()
        try:
            while not self._stop.is_set():
                now = self.clock.now()
                dispatched = self._schedule(now)
                interval = self.notifier.watchdog_interval
                if interval and time.monotonic() >= next_watchdog:
                    problem = stuck(self._threads, self.work, 2 * interval)
                    if problem is None:
                        self.notifier.watchdog()
                    else:
                        log.error("%s; not pinging systemd's watchdog", problem)
                    next_watchdog = time.monotonic() + interval
                self._wake.clear()
                wait = self._next_wakeup(now) if dispatched else self._max_wait()
                if not self.clock.wait(self._wake, wait) and self._manual_clock:
                    self._wake.wait(0.01)  # a clock moved by hand does not wait: do not spin
        finally:
            self.shutdown()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (signal handlers call this; it only sets flags)."""
        self._stop.set()
        self._wake.set()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop polling, finish writes in flight, say offline, close the pool."""
        if self.stopped.is_set():
            return
        self._stop.set()
        self.notifier.stopping()
        log.info("stopping: finishing writes in flight")
        deadline = time.monotonic() + timeout
        for _ in range(self.config.polling.workers):
            self._jobs.put(None)
        self.work.put(None)
        for thread in self._threads:  # a database write in flight gets longer to finish
            grace = PIPELINE_GRACE_S if thread.name == "pipeline" else 0.0
            thread.join(max(0.1, deadline + grace - time.monotonic()))
        if not self._threaded:
            self.work.drain()
        stuck = any(t.name == "pipeline" and t.is_alive() for t in self._threads)
        queued = [
            (w.poll.user_id, r)
            for w in self.work.take_all()
            if isinstance(w, PollJob)
            for r in w.poll.readings
        ]
        self.lost = self.pipeline.persist(queued, in_flight=stuck)  # to the journal
        self.leases.leave()  # the other processes take its accounts at once
        self.leases.close()
        self.publisher.save_records()  # the pipeline thread has stopped: this is the last save
        self.publisher.close()
        self.mqtt.stop(timeout=max(1.0, deadline - time.monotonic()))
        if self.presence is not None:  # offline there, unless another process answers
            self.presence.stop(timeout=max(1.0, deadline - time.monotonic()))
        if self.health_server is not None:
            self.health_server.stop()
        with self._lock:
            for poller in self.pollers.values():
                poller.close()
        if self._own_database:
            self.database.dispose()
        log.info("stopped")
        self.stopped.set()

    def reload(self, config: Config) -> list[str]:
        """Apply what can change while running (SIGHUP); returns what needs a restart."""
        self.config, applied, needs_restart = split_reload(self.config, config)
        if "logging" in applied:
            logging.getLogger().setLevel(config.logging.level)
        if "polling" in applied:
            with self._lock:
                self.scheduler.polling = config.polling
        log.info(
            "configuration reloaded: applied %s%s",
            ", ".join(applied) or "nothing that changed",
            f"; restart to apply {', '.join(needs_restart)}" if needs_restart else "",
        )
        self._wake.set()
        return needs_restart

    # ------------------------------------------------------------------ deterministic driving

    def step(self) -> Outcome | None:
        """Poll every due account and process the polls, in this thread (tests, tools)."""
        now = self.clock.now()
        self._periodic(now)
        with self._lock:
            due = self.scheduler.due(now)
            for key in due:
                self.scheduler.accounts[key].running = True
        jobs = [
            job
            for key in due
            if (poll := self._poll_account(key)) is not None
            and (job := self._publish_poll(poll)) is not None
        ]
        outcome = self._process_polls(jobs) if jobs else None
        self.work.drain()
        return outcome

    def poll_now(self) -> int:
        """Every linked account due at once (the schedule loop takes them); how many."""
        now = self.clock.now()
        with self._lock:
            accounts = list(self.scheduler.accounts.values())
            for account in accounts:
                account.next_poll = min(account.next_poll, now)
        self._wake.set()
        return len(accounts)

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the pipeline thread (MQTT commands that touch sessions or alerts)."""
        self.work.put(job)

    def on_command(self, topic_filter: str, handler: Callable[[InboundMessage], None]) -> None:
        """Subscribe to a command topic; ``handler`` runs on the pipeline thread, never raising.

        Home Assistant's buttons and numbers end up here: the handler may use the
        session and alert services and the database like the pipeline does, and
        what it raises is logged, not fatal.
        """
        self.mqtt.subscribe(topic_filter, gated(handler, self.submit, self._commands))

    # ------------------------------------------------------------------ the schedule

    def _schedule(self, now: datetime) -> bool:
        """Hand due accounts to the poll workers; False when (some) held back by the backlog."""
        self._periodic(now)
        if self.work.qsize() >= MAX_POLL_BACKLOG:
            return False  # the pipeline thread wakes the schedule when it took a batch
        with self._lock:
            # Polls running count too: all of a thousand accounts due at once are not let in.
            running = sum(a.running for a in self.scheduler.accounts.values())
            due = self.scheduler.due(now)
            room = max(MAX_POLL_BACKLOG - self.work.qsize() - running, 0)
            for key in due[:room]:
                self.scheduler.accounts[key].running = True
                self._jobs.put(key)
        return len(due) <= room

    def _periodic(self, now: datetime) -> None:
        if self.leases.enabled and now >= self.leases.next_tick:
            self._leases_moved(self.leases.tick(now), now)
            self._enqueue(self.requests.publish_info)  # processes come and go, accounts move
        if now >= self._next_accounts_refresh:
            self._next_accounts_refresh = now + timedelta(seconds=ACCOUNTS_REFRESH_S)
            self._refresh_accounts(now)
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + timedelta(seconds=HOUSEKEEPING_S)
            self._enqueue(self._housekeeping)

    def next_event(self) -> datetime:
        """When there is next something to do: a poll, or the periodic checks."""
        with self._lock:
            nxt = self.scheduler.next_wakeup()
        candidates = [self._next_accounts_refresh, self._next_housekeeping]
        if nxt is not None:
            candidates.append(nxt)
        return min(candidates)

    def _next_wakeup(self, now: datetime) -> float:
        seconds = (self.next_event() - now).total_seconds()
        return min(max(seconds, 0.0), self._max_wait())

    def _max_wait(self) -> float:
        """The longest the schedule loop sleeps, in the clock's seconds."""
        return MAX_TICK_S * (float(getattr(self.clock, "speed", 1.0)) or 1.0)

    def _refresh_accounts(self, now: datetime) -> None:
        """Add newly linked accounts, drop unlinked ones, unpark relinked ones."""
        try:
            states = link_states(self.database)
            labels = users.labels(self.database, list(states))
        except SQLAlchemyError as exc:
            log.debug("accounts not refreshed: %s", type(exc).__name__)
            return
        held = {u: link for u, link in states.items() if self.leases.holds(u)}
        with self._lock:
            for user_id, link in held.items():
                info = self.accounts.get(user_id)
                if user_id not in self.pollers:
                    self.pollers[user_id] = AccountPoller(
                        self.database,
                        self.config,
                        user_id,
                        clock=self.clock.now,
                        session=self._http,
                        box=self.box,
                    )
                    self.scheduler.add(user_id, now)
                    info = self.accounts[user_id] = AccountInfo(user_id, labels.get(user_id, ""))
                    log.info("polling ThermoWorks account of %s", info.label or user_id)
                assert info is not None
                self.pollers[user_id].note_link(link)
                parked = self.scheduler.accounts[user_id].state is AccountState.PARKED
                relinked = link.state == CredentialState.OK and (
                    info.credentials != CredentialState.OK
                    or link.updated_at != info.credentials_changed
                )
                info.credentials, info.credentials_changed = link.state, link.updated_at
                info.label = labels.get(user_id, info.label)
                if parked and relinked:
                    log.info("account of %s linked again: polling resumes", info.label)
                    self.scheduler.unpark(user_id, now)
            for user_id in [u for u in self.pollers if u not in states]:
                log.info("account of user %d unlinked: no longer polled", user_id)
                self.pollers.pop(user_id).close()
                self.scheduler.remove(user_id)
                self.accounts.pop(user_id, None)
                self.publisher.forget_account(user_id)
                self.pipeline.forget_account(user_id)

    # ------------------------------------------------------------------ polling (workers)

    def _poll_worker(self) -> None:
        while True:
            key = self._jobs.get()
            if key is None or self._stop.is_set():
                return
            poll = self._poll_account(key)
            job = self._publish_poll(poll) if poll is not None else None
            if job is not None:
                self.work.put(job)
            self._wake.set()

    def _publish_poll(self, poll: Poll) -> PollJob | None:
        """A poll's states go out at once, from the thread that polled, then it is queued.

        Publishing does not wait for the pipeline thread's database work (nor for the
        database at all): poll-to-publish stays short however busy the pipeline is.
        None: the account's lease was taken (nothing published, nothing queued).
        """
        if not self.leases.confirm(poll.user_id):
            self._lose({poll.user_id})
            return None
        received = time.perf_counter()
        devices = self.owners.own(poll.user_id, poll.devices)
        try:
            self.publisher.publish_devices(
                poll.user_id,
                devices,
                now=self.clock.now(),
                nicknames=self._nicknames.get(poll.user_id, {}),
            )
        except Exception:  # never lose the poll over a publishing bug
            log.exception("publishing the states of account %d failed", poll.user_id)
        self.stats.latencies_ms.append((time.perf_counter() - received) * 1000)
        return PollJob(poll, received, frozenset(d.serial for d in devices))

    def _poll_account(self, key: int) -> Poll | None:
        """One cloud poll; reschedules the account whatever happens."""
        with self._lock:
            poller = self.pollers.get(key)
        started = self.clock.now()
        if poller is None:
            return None
        requests = poller.requests_made()
        try:
            poll = poller.poll()
        except CloudError as exc:
            self._poll_failed(key, exc)
            return None
        except SQLAlchemyError as exc:  # the database, not the cloud: an outage, said as such
            self._poll_failed(key, exc, f"database unreachable during the poll: {describe(exc)}")
            return None
        except Exception as exc:  # a bug or an unexpected library error: back off, keep going
            log.exception("poll of account %d failed unexpectedly", key)
            self._poll_failed(key, exc)
            return None
        finally:
            self.stats.note_requests(self.clock.now(), poller.requests_made() - requests)
        now = self.clock.now()
        with self._lock:
            if key in self.scheduler.accounts:
                self.scheduler.succeeded(key, started, now, self._active.get(key, False))
            info = self.accounts.get(key)
            if info is not None:
                info.last_poll_seconds = (now - started).total_seconds()
        self._last_success = now
        return poll

    def _poll_failed(self, key: int, exc: BaseException, reason: str | None = None) -> None:
        now = self.clock.now()
        cloud = isinstance(exc, CloudError)
        reason = reason or f"{type(exc).__name__}: {exc}"[:300]
        with self._lock:
            if key not in self.scheduler.accounts:
                return
            wait = self.scheduler.failed(key, now, exc, reason)
            info = self.accounts.get(key)
            if info is not None and cloud:
                info.cloud_errors += 1
                if wait.seconds is None:
                    info.credentials = CredentialState.NEEDS_REAUTH
        if cloud:
            self.stats.cloud_errors += 1
        say_poll_failure(key, exc, reason, wait)
        self._enqueue(self._publish_bridge)

    # ------------------------------------------------------------------ the pipeline thread

    def _enqueue(self, job: Callable[[], None]) -> None:
        if self._threaded:
            self.work.put(job)
        else:
            self.work.run(job)

    def _pipeline_worker(self) -> None:
        self.work.worker()

    def _process_polls(self, jobs: list[PollJob]) -> Outcome:
        """Store, run sessions and alerts, publish what that produced (states are out already)."""
        now = self.clock.now()
        polls = [job.poll for job in jobs]  # published by _publish_poll
        outcome = self.pipeline.process(polls, now)
        self.owners.note(outcome.syncs)  # empty unless committed
        self._lose(outcome.lost)
        active_serials = set(self.sessions.tracker.active_serials())
        for job in jobs:
            if job.poll.user_id in outcome.lost:
                continue
            poll, names = job.poll, outcome.nicknames.get(job.poll.user_id, {})
            mine = self.owners.own(poll.user_id, poll.devices)
            moved = {d.serial for d in mine} != job.published  # a device changed owner
            if outcome.database_ok and (moved or names != self._nicknames.get(poll.user_id, {})):
                self._nicknames[poll.user_id] = names
                self.publisher.publish_devices(poll.user_id, mine, now=now, nicknames=names)
            self.stats.polls += 1
            self.stats.readings += len(poll.readings)
            self.stats.values += sum(r.value is not None for r in poll.readings)
            cooking = any(d.serial in active_serials for d in poll.devices)
            active = cooking or self._activity.active(poll, self.config.polling)
            self._note_activity(poll, active, now)
        self._after_commit(outcome)
        self._publish_bridge()
        self.publisher.save_records()
        return outcome

    def _note_activity(self, poll: Poll, active: bool, now: datetime) -> None:
        with self._lock:
            info = self.accounts.get(poll.user_id)
            if info is not None:
                info.devices = poll.devices
            changed = self._active.get(poll.user_id) != active
            self._active[poll.user_id] = active
            account = self.scheduler.accounts.get(poll.user_id)
            if (
                changed
                and account is not None
                and not account.running
                and account.state is AccountState.OK
            ):
                # A cook just started or ended: move the next poll to the new cadence.
                account.next_poll = min(
                    account.next_poll, now + timedelta(seconds=self.scheduler.interval(active))
                )

    def _after_commit(self, outcome: Outcome) -> None:
        """Publish what the database part produced; firings go out through the outbox."""
        if outcome.firings:
            self.stats.firings += len(outcome.firings)
            for firing in outcome.firings:
                text = describe_firing(firing)
                self.stats.recent_firings.append(text)
                log.info("alert fired: %s", text)
            self.alert_outbox.dirty = True
        for change in outcome.session_changes:
            if change.kind is not ChangeKind.UPDATED:
                snap = change.session
                log.info(
                    "session %s: %s on %s (%s)",
                    change.kind.value,
                    snap.name,
                    snap.serial,
                    snap.session_type,
                )
        self.session_mqtt.changed(outcome.session_changes)
        if publish_cook(self.publisher, self.pipeline.cook, outcome.cook):
            self.cook_outbox.dirty = True  # stall or ready events wait
        self._drain_outboxes()
        if outcome.database_ok:
            self.alert_control.refresh()  # targets and alert-active states, for HA

    def _on_mqtt_connect(self) -> list[Any]:
        """After every (re)connect: our claim; waiting firings, session and cook events."""
        for outbox in self.outboxes:
            outbox.on_connect()
        return list(self.instance.messages())

    def _session_ended(self) -> None:
        """A session ended (a poll, housekeeping or a button): its event goes out now."""
        self.session_outbox.dirty = True
        self._drain_outboxes()

    def _drain_outboxes(self) -> None:
        """Publish waiting events (firings, sessions, cooks) while the database answers."""
        for outbox in self.outboxes:
            if outbox.dirty and self.pipeline.database_ok:
                outbox.drain()

    def _pending_firings(self, db: sa.orm.Session, limit: int) -> list[tuple[int, Firing]]:
        firings = self.alerts.pending(db, limit, self.leases.accounts())
        return [(f.id, f) for f in firings if f.id is not None]

    # ------------------------------------------------------------------ account leases

    def _lose(self, user_ids: set[int]) -> None:
        """Leases found taken by another process (a fence, a confirm): drop them at once."""
        if lost := self.leases.lose(user_ids) if user_ids else set():
            self._leases_moved(LeaseChange(lost=frozenset(lost)), self.clock.now())

    def _leases_moved(self, change: LeaseChange, now: datetime) -> None:
        """Poll the accounts taken, stop polling those lost; the services follow."""
        if not change:
            return
        with self._lock:
            for user_id in change.lost & set(self.pollers):
                self.pollers.pop(user_id).close()
                self.scheduler.remove(user_id)
                self.accounts.pop(user_id, None)
        for user_id in change.lost:
            self.publisher.hand_over(user_id)  # its topics are the new holder's
            self.pipeline.forget_account(user_id)
        if change.taken:
            self._refresh_accounts(now)
        self._enqueue(self._rescope)  # sessions, alerts, owners: those of the accounts held

    def _rescope(self) -> None:
        self.session_mqtt.changed(rescope(self.leases, self.pipeline, self.owners))

    # ------------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        now = self.clock.now()
        changes = self.pipeline.tick(now)
        if changes:
            log.info("sessions: %d change(s) between polls", len(changes))
        self.session_mqtt.changed(changes)
        self.publisher.refresh(now)
        self._drain_outboxes()
        cutoff = retention_cutoff(now, self.config.storage.retention_days)
        if cutoff is not None and now >= self._next_prune:
            self._next_prune = now + timedelta(seconds=PRUNE_EVERY_S)
            try:
                with self.database.transaction() as db:
                    deleted = prune_readings(db, cutoff)
                if deleted:
                    log.info("pruned %d readings older than %s", deleted, cutoff.date())
            except SQLAlchemyError as exc:
                log.warning("readings not pruned: %s", type(exc).__name__)
        self._publish_bridge()
        self.publisher.save_records()

    # ------------------------------------------------------------------ status

    def estimates(self, serial: str) -> dict[int, Estimate]:
        """The device's latest done-time estimates by channel (for the web app's thread)."""
        latest = dict(self.pipeline.cook.last)  # one C-level copy: the pipeline thread writes
        return {channel: e for (s, channel), e in latest.items() if s == serial}

    def _publish_bridge(self) -> None:
        if self.publisher.writes_bridge():  # of several processes, the first: its figures
            self.publisher.publish_bridge_state(self.bridge_status())

    def bridge_status(self) -> BridgeStatus:
        """The bridge's state for its Home Assistant device."""
        with self._lock:
            accounts = list(self.accounts.values())
            scheduled = [dataclasses.replace(a) for a in self.scheduler.accounts.values()]
        return status.bridge_status(
            accounts,
            scheduled,
            database_ok=self.pipeline.database_ok,
            last_poll=self._last_success,
            cloud_errors=self.stats.cloud_errors,
            cloud_requests_hour=self.stats.requests_last_hour(self.clock.now()),
            rejected_readings=self.pipeline.rejected_readings,
            processes=self.leases.processes,
        )

    def health_report(self) -> tuple[bool, dict[str, Any]]:
        """``GET /health``: healthy when the database answers and the broker is connected."""
        with self._lock:
            accounts = dict(self.accounts)
            scheduled = [dataclasses.replace(a) for a in self.scheduler.accounts.values()]
        return status.health_report(
            now=self.clock.now(),
            started_at=self.started_at,
            database=self.database,
            mqtt=self.mqtt.health(),
            accounts=accounts,
            scheduled=scheduled,
            stats=self.stats,
            buffer=self.buffer,
            pipeline_error=self.pipeline.last_error,
            queued_jobs=self.work.qsize(),
            rejections=self.pipeline.rejections(),
            show_accounts=self.config.http.show_accounts,
            last_progress=self.pipeline.last_progress,
            stuck=stuck(self._threads, self.work, STUCK_S),
            journal=self.pipeline.journal_info(),
            leases=self.leases.health(),
        )

    # ------------------------------------------------------------------ helpers

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
