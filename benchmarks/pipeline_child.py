"""The bridge's side of the pipeline benchmark (``pipeline.py`` starts it; not run by hand).

A module of its own, so that the bridge's process imports what ``grillstats-bridge run``
imports and the benchmark's own tools (Alembic, the simulator) stay out of its memory.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from benchmarks.prerendered import Answers, Layout, prerendered_session
from grillstats_bridge.config import Config


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _thread_cpu() -> dict[str, float]:
    """CPU seconds by thread kind (poll workers together), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        name = thread.name.split("-")[0] if "-" in thread.name else thread.name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


def child(spec_path: Path) -> None:
    import logging

    import requests

    from grillstats_bridge.bridge.daemon import Bridge
    from grillstats_bridge.bridge.identity import ProcessIdentity
    from grillstats_bridge.bridge.poller import AccountPoller
    from grillstats_bridge.clock import SimClock
    from grillstats_bridge.domain import ensure_utc

    spec = json.loads(spec_path.read_text())
    logging.basicConfig(level=logging.WARNING, format="bridge: %(levelname)s %(name)s: %(message)s")
    config = Config(
        **{name: type(getattr(Config(), name))(**values) for name, values in spec["config"].items()}
    )
    c = spec["clock"]
    # The leases run on the bridge's (simulated, fast) clock: 30 s of real time each, as
    # the default gives a real bridge, not 30 s of the simulation's.
    lease_time = max(config.database.lease_time, config.database.lease_time * c["speed"])
    config = config.replace("database", lease_time=lease_time)
    from datetime import datetime

    clock = SimClock(ensure_utc(datetime.fromisoformat(c["start"])), c["speed"])
    clock.set(c["offset"] + (time.monotonic() - c["monotonic"]) * c["speed"])

    # Measurement hooks: when each poll's result was in the bridge, when its states were
    # handed to the MQTT client and which they were, when the pipeline finished it.
    # By device object: the daemon may publish only some of a poll's devices (those its
    # account owns), in a list of its own, but the same objects.
    available: dict[int, tuple[float, int, list[int], int]] = {}
    # Streamed to a file, not kept: the bridge's memory must not grow with the measurement.
    # A large buffer: a write that reaches the OS releases the GIL, and waiting to get it
    # back would count in the pipeline's time.
    poll_log = Path(spec["out"] + ".polls").open("wb", buffering=1 << 20)  # noqa: SIM115
    local = threading.local()
    finished: list[tuple[float, int]] = []
    original_poll = AccountPoller.poll
    original_send = requests.Session.send

    def send(self: requests.Session, request: Any, **kw: Any) -> Any:
        response = original_send(self, request, **kw)
        local.answered = time.time()  # the cloud's answer is in (its body read)
        return response

    def poll(self: AccountPoller) -> Any:
        local.answered = None
        result = original_poll(self)
        # From the cloud's last answer: parsing it is the bridge's work, the cloud's is not.
        ids = [id(d) for d in result.devices]
        entry = (local.answered or time.time(), len(result.readings), ids, self.user_id)
        for key in ids:
            available[key] = entry
        return result

    requests.Session.send = send  # type: ignore[method-assign]

    AccountPoller.poll = poll  # type: ignore[method-assign]
    if os.environ.get("BENCH_SWITCH"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH"]))
    http = None
    pre = spec["prerendered"]
    if pre is not None:
        layout = pre["layout"]
        answers = Answers(
            Path(pre["base"]),
            Layout(**{**layout, "emails": tuple(layout["emails"])}),
            pre["account_ids"],
        )
        http = prerendered_session(
            answers, clock.offset, config.thermoworks.firestore_url, pre["serials"]
        )
    if os.environ.get("BENCH_TRACEMALLOC"):
        import tracemalloc

        tracemalloc.start()
    stages = {"imported": _status_kb("VmRSS")}  # the bridge's modules and the benchmark's
    index, count = spec.get("identity", (0, 1))
    bridge = Bridge(config, clock=clock, http=http, identity=ProcessIdentity(index, count))
    stages["constructed"] = _status_kb("VmRSS")
    if os.environ.get("BENCH_ORM_SYNC"):  # A/B: every poll through sync_devices
        from grillstats_bridge.store.devices import sync_devices

        bridge.pipeline.devices.sync = lambda db, uid, devs, **kw: sync_devices(db, uid, devs, **kw)  # type: ignore[method-assign]
    publish_devices = bridge.publisher.publish_devices
    publish_state = bridge.mqtt.publish_state
    process = bridge.pipeline.process

    def publish_devices_hook(user_id: int, devices: Any, **kw: Any) -> None:
        entry = next((e for d in devices if (e := available.get(id(d))) is not None), None)
        for key in entry[2] if entry is not None else ():
            available.pop(key, None)
        if entry is None:
            publish_devices(user_id, devices, **kw)
            return
        local.published = []
        try:
            publish_devices(user_id, devices, **kw)
        finally:
            record = {
                "available": entry[0],
                "handed": time.time(),
                "readings": entry[1],
                "account": entry[3],
                "published": local.published,
            }
            local.published = None
            with contextlib.suppress(ValueError):  # closed: a backlog drained after the window
                # orjson: the record is the benchmark's work, counted in the bridge's CPU
                poll_log.write(orjson.dumps(record) + b"\n")

    def publish_state_hook(topic: str, payload: Any, **kw: Any) -> None:
        published = getattr(local, "published", None)
        if published is not None:
            published.append((topic, payload if isinstance(payload, str) else payload.decode()))
        publish_state(topic, payload, **kw)

    def process_hook(polls: Any, now: Any) -> Any:
        outcome = process(polls, now)
        finished.append((time.time(), sum(len(p.readings) for p in polls)))
        return outcome

    resent: list[int] = []
    resend_dropped = bridge.publisher.resend_dropped

    def resend_hook() -> int:
        sent = resend_dropped()
        resent.append(sent)
        return sent

    bridge.publisher.resend_dropped = resend_hook  # type: ignore[method-assign]
    bridge.publisher.publish_devices = publish_devices_hook  # type: ignore[method-assign]
    bridge.mqtt.publish_state = publish_state_hook  # type: ignore[method-assign]
    bridge.pipeline.process = process_hook  # type: ignore[method-assign]
    profiler = None
    poll_profilers: list[Any] = []
    if spec["profile"]:
        import cProfile

        profiler = cProfile.Profile()
        worker = bridge._pipeline_worker
        poll_worker = bridge._poll_worker

        def profiled() -> None:
            assert profiler is not None
            profiler.runcall(worker)

        def poll_profiled() -> None:
            mine = cProfile.Profile()
            poll_profilers.append(mine)
            mine.runcall(poll_worker)

        bridge._pipeline_worker = profiled  # type: ignore[method-assign]
        bridge._poll_worker = poll_profiled  # type: ignore[method-assign]

    rss: list[tuple[float, int]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.wait(spec["rss_every"]):
            rss.append((time.monotonic() - t0, _status_kb("VmRSS")))

    sections = _time_sections(bridge, spec.get("sections") or ())
    bridge.start()
    stages["started"] = _status_kb("VmRSS")
    runner = threading.Thread(target=bridge.run, name="schedule")
    runner.start()
    threading.Thread(target=sample, name="rss", daemon=True).start()
    time.sleep(spec["warmup"])
    w0, cpu0, threads0 = time.time(), time.process_time(), _thread_cpu()
    sections0 = {k: tuple(v) for k, v in sections.items()}
    n_fin0 = len(finished)
    time.sleep(spec["seconds"])
    w1, cpu1, threads1 = time.time(), time.process_time(), _thread_cpu()
    sections1 = {k: tuple(v) for k, v in sections.items()}
    vmhwm = _status_kb("VmHWM")  # the peak of the run, before the stop and the read-back below
    rss_anon, rss_file = _status_kb("RssAnon"), _status_kb("RssFile")
    if os.environ.get("BENCH_TRACEMALLOC"):  # where the memory is (slows the bridge down)
        import tracemalloc

        snapshot = tracemalloc.take_snapshot()
        total = sum(s.size for s in snapshot.statistics("filename"))
        print(f"{total / 1e6:7.1f} MB traced in all", flush=True)
        # BENCH_TRACEMALLOC=lineno: by line instead of by file
        by = "lineno" if os.environ["BENCH_TRACEMALLOC"] == "lineno" else "filename"
        top = snapshot.statistics(by)[:40]
        print("\n".join(f"{s.size / 1e6:7.1f} MB {s.traceback}" for s in top), flush=True)
    errors = bridge.stats.pipeline_errors
    stop.set()
    rss.append((time.monotonic() - t0, _status_kb("VmRSS")))
    queued = bridge.work.qsize()
    window_fin = finished[n_fin0:]
    window_fin = [f for f in window_fin if f[0] <= w1]
    bridge.request_stop()
    runner.join(30)
    dropped = bridge.mqtt.health().states_dropped  # over the whole run, the start's too
    poll_log.close()
    with Path(spec["out"] + ".polls").open(encoding="utf-8") as f:
        window_polls = [r for r in map(json.loads, f) if w0 <= r["available"] <= w1]
    if profiler is not None:
        Path(spec["profile"]).mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(Path(spec["profile"]) / "pipeline.prof"))
        for n, poll_profiler in enumerate(poll_profilers):
            poll_profiler.dump_stats(str(Path(spec["profile"]) / f"poll-{n}.prof"))
    result = {
        "polls": window_polls,
        "window": {
            "seconds": w1 - w0,
            "processed_readings": sum(n for _, n in window_fin),
            "offered_readings": sum(r["readings"] for r in window_polls),
            "transactions": len(window_fin),
            "polls_per_transaction": len(window_polls) / max(len(window_fin), 1),
            "cpu_seconds": cpu1 - cpu0,
            "cpu_by_thread": {
                k: threads1.get(k, 0.0) - threads0.get(k, 0.0)
                for k in sorted(threads1)
                if threads1.get(k, 0.0) - threads0.get(k, 0.0) > 0.005
            },
            "queued_at_end": queued,
            # CPU seconds and calls inside each --sections method, over the window
            "sections": {
                k: [sections1[k][0] - sections0[k][0], sections1[k][1] - sections0[k][1]]
                for k in sections1
            },
        },
        "vmhwm_kb": vmhwm,
        "rss_anon_kb": rss_anon,  # the process's own memory
        "rss_file_kb": rss_file,  # shared libraries' pages it touched
        "rss": rss,
        "rss_stages_kb": stages,
        "errors": errors,
        "states_dropped": dropped,  # by the full MQTT outbox (mqtt.max_queue)
        "resent": sum(resent),  # retained topics sent again after such a drop
    }
    Path(spec["out"]).write_text(json.dumps(result))


def _time_sections(bridge: Any, names: Sequence[str]) -> dict[str, list[float]]:
    """Wrap each named method so that the CPU time of the thread calling it (and the calls)
    add up: ``bridge.pipeline.process`` (an attribute path from the bridge) or
    ``module:Class.method`` / ``module.function`` (looked up where it is called)."""
    sections: dict[str, list[float]] = {}
    for name in names:
        path, _, attr = name.rpartition(".")
        target: Any
        try:
            if path == "bridge" or path.startswith("bridge."):
                target = bridge
                for part in path.split(".")[1:]:
                    target = getattr(target, part)
            else:
                module, _, cls = path.partition(":")
                target = importlib.import_module(module)
                target = getattr(target, cls) if cls else target
            inner = getattr(target, attr)
        except (AttributeError, ImportError, ValueError) as exc:
            raise SystemExit(f"--sections: no {name!r} ({exc})") from None
        total = sections.setdefault(name, [0.0, 0])

        def timed(*a: Any, _inner: Any = inner, _total: list[float] = total, **kw: Any) -> Any:
            started = time.thread_time()
            try:
                return _inner(*a, **kw)
            finally:
                _total[0] += time.thread_time() - started
                _total[1] += 1

        setattr(target, attr, timed)
    return sections


if __name__ == "__main__":
    child(Path(sys.argv[1]))
