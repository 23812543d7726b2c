"""The machine's raw limits, measured in the pipeline benchmark's run (``pipeline.py`` calls it).

What the bridge is compared with, on the same broker, database and (shared, noisy) cores:

* paho QoS 0 and QoS 1 messages/s: one paho client publishes small payloads (``"71.3"``,
  like a probe's state) over 100 topics in a tight loop, driven through paho's external
  loop API as the bridge's client is (QoS 1 with the bridge's in-flight window); a second
  paho client, in a process of its own so that it does not share this one's GIL, counts
  what it receives. The rate is what that subscriber received per second, first to last;
* PostgreSQL batched insert rows/s: rows like the readings table's, 1,000 per
  ``INSERT ... ON CONFLICT DO NOTHING`` (psycopg2 ``execute_values``, as the bridge's
  multi-row insert) and one commit per batch, into a temporary table with the readings
  table's columns and indexes.

Each runs for ``seconds``. Also runnable alone::

    PYTHONPATH=. .venv/bin/python benchmarks/raw_limits.py --seconds 3
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

TOPICS = 100
PAYLOAD = b"71.3"
BATCH = 1000
READINGS_TABLE = """
CREATE TEMP TABLE raw_readings (
    id bigserial PRIMARY KEY,
    device_id varchar(50) NOT NULL,
    probe smallint NOT NULL,
    time timestamptz NOT NULL,
    value double precision NOT NULL,
    unit varchar(1) NOT NULL,
    UNIQUE (device_id, probe, time)
);
CREATE INDEX ON raw_readings (time);
"""  # the readings table's columns and indexes (store/models.py ReadingRow)


def _client(client_id: str) -> paho.Client:
    return paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv311,
    )


IDLE_END = 10.0  # seconds without a message after the flood: the counter stops


def count(host: str, port: int, root: str, qos: int) -> None:
    """The counting subscriber (a child process): prints ``ready``, then its tally as JSON."""
    tally = {"n": 0, "first": 0.0, "last": 0.0}
    done = []

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == f"{root}/end":
            done.append(True)
            return
        now = time.monotonic()
        if not tally["n"]:
            tally["first"] = now
        tally["n"] += 1
        tally["last"] = now

    client = _client(f"{root}-count")
    client.on_message = on_message
    subscribed: list[bool] = []

    def on_subscribe(*_a: Any) -> None:
        subscribed.append(True)
        if len(subscribed) == 2:
            print("ready", flush=True)

    client.on_subscribe = on_subscribe
    client.connect(host, port)
    client.subscribe(f"{root}/t/#", qos=qos)
    # The end at QoS 1 whatever the flood's: the broker drops QoS 0 messages for a
    # subscriber that falls behind, and a dropped end left the counter waiting 10 min
    # (the run died at the 120 s timeout). Quiet for IDLE_END after the flood: ended too.
    client.subscribe(f"{root}/end", qos=1)
    deadline = time.monotonic() + 600
    while not done and time.monotonic() < deadline:
        client.loop(0.5)
        if tally["n"] and time.monotonic() - tally["last"] > IDLE_END:
            break
    client.disconnect()
    print(json.dumps(tally), flush=True)


def paho_rate(host: str, port: int, qos: int, seconds: float, max_inflight: int = 100) -> float:
    """Messages/s a second paho client received from a tight publish loop at ``qos``."""
    root = f"gsraw-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, __file__, "--count", root, "--host", host, "--port", str(port)]
    counter = subprocess.Popen(
        [*command, "--qos", str(qos)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert counter.stdout is not None
        if counter.stdout.readline().strip() != "ready":
            raise SystemExit("raw limits: the counting subscriber did not subscribe")
        client = _client(f"{root}-pub")
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)
        client.connect(host, port)
        sock = client.socket()
        assert sock is not None, "not connected"
        topics = [f"{root}/t/{i}" for i in range(TOPICS)]
        end = time.monotonic() + seconds
        i = 0
        while True:
            for _ in range(100):
                client.publish(topics[i % TOPICS], PAYLOAD, qos=qos)
                i += 1
            if time.monotonic() >= end:
                break
            # The bridge's I/O thread: read acknowledgements, write what the socket took.
            wanted = [sock] if client.want_write() else []
            readable, writable, _ = select.select([sock], wanted, [], 0)
            if readable:
                client.loop_read()
            if writable:
                client.loop_write()
            while client.want_write() or (qos and len(client._out_messages) > max_inflight):
                readable, writable, _ = select.select([sock], [sock], [], 1)
                if readable:
                    client.loop_read()
                if writable and client.want_write():
                    client.loop_write()
                else:
                    client.loop_misc()
        client.publish(f"{root}/end", b"", qos=1)
        while client.want_write() or client._out_messages:
            client.loop(0.1)
        client.disconnect()
        out, _ = counter.communicate(timeout=120)
        tally = json.loads(out.strip().splitlines()[-1])
        span = tally["last"] - tally["first"]
        return tally["n"] / span if span > 0 else 0.0
    finally:
        if counter.poll() is None:
            counter.kill()


def pg_insert_rate(url: str, seconds: float) -> float:
    """Rows/s of batched multi-row inserts into a temporary table like ``readings``."""
    import psycopg2  # type: ignore[import-untyped]
    import psycopg2.extras  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = psycopg2.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database
    )
    try:
        with conn.cursor() as cur:
            cur.execute(READINGS_TABLE)
        conn.commit()
        t0 = datetime(2026, 11, 28, 6, tzinfo=UTC)
        sql = (
            "INSERT INTO raw_readings (device_id, probe, time, value, unit) VALUES %s "
            "ON CONFLICT DO NOTHING"
        )
        rows = 0
        started = time.monotonic()
        end = started + seconds
        batch = 0
        while time.monotonic() < end:
            at = t0 + timedelta(seconds=15 * batch)
            values = [
                (f"BENCH{d:06d}", p, at, 70.0 + d % 50 + p / 10, "F")
                for d in range(BATCH // 4)
                for p in range(1, 5)
            ]
            with conn.cursor() as cur:
                psycopg2.extras.execute_values(cur, sql, values, page_size=BATCH)
            conn.commit()
            rows += len(values)
            batch += 1
        return rows / (time.monotonic() - started)
    finally:
        conn.close()


def measure(host: str, port: int, database_url: str | None, seconds: float) -> dict[str, float]:
    """Every raw limit, one after the other (``seconds`` each)."""
    out = {
        "paho_qos0_msgs_per_s": paho_rate(host, port, 0, seconds),
        "paho_qos1_msgs_per_s": paho_rate(host, port, 1, seconds),
    }
    if database_url is not None and database_url.startswith("postgresql"):
        out["pg_insert_rows_per_s"] = pg_insert_rate(database_url, seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL database (a temporary table is written); none: broker only",
    )
    parser.add_argument("--count", metavar="ROOT", help=argparse.SUPPRESS)
    parser.add_argument("--qos", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count:
        count(args.host, args.port, args.count, args.qos)
        return
    for name, value in measure(args.host, args.port, args.database_url, args.seconds).items():
        print(f"{name:24} {value:12,.0f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
