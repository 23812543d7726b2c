"""MQTT publishing throughput and latency, run by hand against a local broker.

    PYTHONPATH=. /work/venv/bin/python benchmarks/mqtt_publish.py [--devices 100] [--rounds 50]

Three measurements, each ended by a subscriber on the same broker receiving the
last message (so they include the broker and the network, not just a hand-off).
The subscriber is ``mosquitto_sub`` in a process of its own, so that receiving
does not compete with the bridge for Python's GIL as an in-process paho client would:

1. raw states: ``MqttClient.publish_state`` of QoS 0 messages, one topic each;
2. events: QoS 1 ``publish_event`` until every :class:`Delivery` is acknowledged;
3. the publisher: ``--devices`` four-probe devices in accounts of ten, every probe
   moving each round -> readings per second through ``publish_devices`` until the
   last value of every probe is at the subscriber (a value still waiting when a newer
   one comes is superseded: latest wins), and the poll-to-publish latency of one
   account (call -> its last probe's new value at the subscriber).

Uses a unique instance id and test-only prefixes, and clears what it retained.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import threading
import time
import uuid
from datetime import timedelta

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.domain import Device, utcnow
from grillstats_bridge.ha.entities import DeviceView
from grillstats_bridge.ha.payloads import device_publication
from grillstats_bridge.ha.publisher import Publisher, naming_for
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.retained import read_retained
from tests.sample_devices import sample_devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--messages", type=int, default=50000)
    args = parser.parse_args()
    inst = f"bench{uuid.uuid4().hex[:8]}"
    config = MqttConfig(
        host=args.host,
        port=args.port,
        instance_id=inst,
        base_topic=f"gsbench-{inst}",
        discovery_prefix=f"gsbench-{inst}-ha",
    )
    try:
        raw_states(config, args.messages)
        events(config, args.messages // 5)
        publisher(config, args.devices, args.rounds)
        print(f"memory     : {rss_mb():.0f} MB resident (whole process, after the publisher run)")
    finally:
        clean_up(config)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def clean_up(config: MqttConfig) -> None:
    """Clear what the benchmark left retained (only its own unique namespaces)."""
    client = MqttClient(config, status_topic=None, client_id=f"{config.instance_id}-clean")
    client.start()
    assert client.wait_ready(10)
    while True:  # a broker sends only part of a big retained list at once: repeat
        scan = read_retained(
            config,
            [f"{config.base_topic}/#", f"{config.discovery_prefix}/#"],
            marker_topic=f"{config.base_topic}/marker/{uuid.uuid4().hex}",
            client_id=f"{config.instance_id}-scan",
        )
        for topic in scan.messages:
            client.clear(topic)
        assert client.flush(30)
        if scan.complete:
            break
    client.stop()


class Counter:
    """``mosquitto_sub`` on a filter: counts messages, remembers when each topic last arrived."""

    def __init__(self, config: MqttConfig, topic_filter: str) -> None:
        self.lock = threading.Condition()
        self.count = 0
        self.last: dict[str, tuple[float, str]] = {}  # topic -> (arrival epoch s, payload)
        broker = ["-h", config.host, "-p", str(config.port)]
        self.process = subprocess.Popen(
            ["mosquitto_sub", *broker, "-q", "0", "-t", topic_filter, "-F", "%U %t %p"],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self._wait_subscribed(broker, topic_filter)
        except BaseException:
            self.close()
            raise

    def _wait_subscribed(self, broker: list[str], topic_filter: str) -> None:
        # ready when it receives a message published after it started
        ready = topic_filter.rstrip("#") + "ready"
        deadline = time.monotonic() + 10
        while ready not in self.last:
            assert time.monotonic() < deadline, "mosquitto_sub never subscribed"
            subprocess.run(["mosquitto_pub", *broker, "-t", ready, "-m", "x"], check=True)
            with self.lock:
                self.lock.wait_for(lambda: ready in self.last, 0.2)
        with self.lock:
            self.count = 0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            stamp, topic, payload = line.rstrip("\n").split(" ", 2)
            with self.lock:
                self.count += 1
                self.last[topic] = (float(stamp), payload)
                self.lock.notify_all()

    def wait_count(self, n: int, timeout: float = 120) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: self.count >= n, timeout), (self.count, n)

    def wait_values(self, want: dict[str, str], timeout: float = 120) -> float:
        """Wait until every topic in ``want`` last showed its payload; the latest arrival."""

        def done() -> bool:
            return all(self.last.get(t, (0, None))[1] == p for t, p in want.items())

        with self.lock:
            assert self.lock.wait_for(done, timeout), "final values never arrived"
            return max(self.last[t][0] for t in want)

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)
        assert self.process.stdout is not None
        self.process.stdout.close()


def raw_states(config: MqttConfig, n: int) -> None:
    client = MqttClient(
        dataclasses.replace(config, max_queue=n),
        status_topic=None,
        client_id=f"{config.instance_id}-raw",
    )
    client.start()
    assert client.wait_ready(10)
    root = f"{config.base_topic}/raw"
    with Counter(config, f"{root}/#") as counter:
        start = time.perf_counter()
        for i in range(n):
            client.publish_state(f"{root}/{i}", str(i), retain=False)  # no coalescing
        handed = time.perf_counter() - start
        counter.wait_count(n)
        total = time.perf_counter() - start
    h = client.health()
    client.stop()
    print(
        f"raw states : {n} QoS 0 publishes in {total:.2f} s = {n / total:,.0f}/s end to end "
        f"(hand-off {n / handed:,.0f}/s, {h.states_dropped} dropped)"
    )


def events(config: MqttConfig, n: int) -> None:
    client = MqttClient(
        dataclasses.replace(config, max_events=n + 1),
        status_topic=None,
        client_id=f"{config.instance_id}-ev",
    )
    client.start()
    assert client.wait_ready(10)
    topic = f"{config.base_topic}/events"
    start = time.perf_counter()
    deliveries = [client.publish_event(topic, str(i)) for i in range(n)]
    assert all(d.wait(120) for d in deliveries)
    total = time.perf_counter() - start
    client.stop()
    print(f"events     : {n} QoS 1 events acknowledged in {total:.2f} s = {n / total:,.0f}/s")


def fleet(count: int) -> list[Device]:
    """``count`` four-probe devices cloned from the sample Signals."""
    now = utcnow()
    base = sample_devices(now)[0]
    out = []
    for i in range(count):
        serial = f"10:06:1C:{i // 256:02X}:{i % 256:02X}:01"
        probes = tuple(
            dataclasses.replace(p, serial=serial, value=150.0 + p.channel, status="NORMAL")
            for p in base.probes
        )
        out.append(dataclasses.replace(base, serial=serial, label=f"Grill {i}", probes=probes))
    return out


def moved(devices: list[Device], step: int) -> list[Device]:
    now = utcnow()
    return [
        dataclasses.replace(
            d,
            last_seen=now - timedelta(seconds=5),
            probes=tuple(
                dataclasses.replace(p, value=150.0 + p.channel + step * 0.1) for p in d.probes
            ),
        )
        for d in devices
    ]


def publisher(config: MqttConfig, count: int, rounds: int) -> None:
    naming = naming_for(config)
    client = MqttClient(config, status_topic=naming.status_topic)
    pub = Publisher(client, config)
    client.start()
    assert client.wait_ready(10)
    devices = fleet(count)
    accounts = [devices[i : i + 10] for i in range(0, len(devices), 10)]
    readings_per_round = sum(len(d.probes) for d in devices)
    with Counter(config, f"{naming.root}/device/#") as counter:
        t0 = time.perf_counter()
        for user_id, devs in enumerate(accounts):  # discovery + first states
            pub.publish_devices(user_id, moved(devs, 0))
        assert client.flush(60)
        first = time.perf_counter() - t0
        entities = pub.health().entities
        counter.wait_count(len(devices) * (2 + 4))  # availability, device state, 4 probes
        base = counter.count
        # throughput: every probe moves every round (the device states stay the same)
        rounds_devices = [[moved(devs, r) for devs in accounts] for r in range(1, rounds + 1)]
        call_times = []
        wall_start = time.time()
        for per_account in rounds_devices:
            for user_id, devs in enumerate(per_account):
                c0 = time.perf_counter()
                pub.publish_devices(user_id, devs)
                call_times.append(time.perf_counter() - c0)
        readings = rounds * readings_per_round
        final = {}
        for devs in rounds_devices[-1]:
            for device in devs:
                view = DeviceView.of(device, utcnow())
                for state in device_publication(naming, view).states:
                    final[state.topic] = state.payload
        arrived = counter.wait_values(final)
        total = arrived - wall_start
        delivered = counter.count - base
        # latency: one account's poll, call -> its last probe's new value at the subscriber
        latencies = []
        for r in range(rounds + 1, rounds + 201):
            devs = moved(accounts[0], r)
            last_topic = naming.probe_topic(devs[-1].serial, 4)
            want = next(
                s.payload
                for s in device_publication(naming, DeviceView.of(devs[-1], utcnow())).states
                if s.topic == last_topic
            )
            c0 = time.time()
            pub.publish_devices(0, devs)
            with counter.lock:
                assert counter.lock.wait_for(
                    lambda t=last_topic, w=want: counter.last.get(t, (0, ""))[1] == w, 10
                )
                latencies.append(counter.last[last_topic][0] - c0)
    pub.close()
    client.stop()
    call_times.sort()
    latencies.sort()
    print(
        f"publisher  : {count} devices, {entities} entities; first publish (discovery + "
        f"states) {first * 1000:.0f} ms"
    )
    print(
        f"publisher  : {readings} readings in {total:.2f} s = {readings / total:,.0f} "
        f"readings/s end to end ({delivered} state messages reached the subscriber; the rest "
        "were superseded in the outbox by a newer value of the same probe)"
    )
    print(
        f"publisher  : publish_devices(10 devices) call p50 {_ms(call_times, 0.5)} "
        f"p99 {_ms(call_times, 0.99)}"
    )
    print(
        f"publisher  : poll-to-broker latency (10 devices, 40 readings) p50 "
        f"{_ms(latencies, 0.5)} p99 {_ms(latencies, 0.99)} max {latencies[-1] * 1000:.1f} ms; "
        f"mean {statistics.mean(latencies) * 1000:.1f} ms"
    )


def _ms(values: list[float], q: float) -> str:
    return f"{values[min(len(values) - 1, int(q * len(values)))] * 1000:.2f} ms"


if __name__ == "__main__":
    main()
