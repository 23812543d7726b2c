"""MQTT commands parsed strictly: sizes, topics, numbers; fuzzed with Hypothesis.

``parse_command`` is what the alert numbers' and session buttons' handlers run on
every message (``parse_topic`` then ``parse_payload``): whatever comes, it returns a
command or raises ``CommandError`` with one short line.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grillstats_bridge.ha.commands import (
    MAX_COMMAND_BYTES,
    Command,
    CommandError,
    CommandTopic,
    parse_command,
    parse_number,
)
from grillstats_bridge.ha.ids import device_id

ROOT = "grillstats/home"
SID = "10_06_1C_6F_47_70"
TARGET_TOPIC = f"{ROOT}/device/{SID}/probe/2/target/set"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("203", 203.0),
        (" 62.5 ", 62.5),
        ("-18", -18.0),
        ("+18", 18.0),
        ("205.", 205.0),
        (".5", 0.5),
        ("0", None),
        ("0.0", None),
        ("", None),
        ("None", None),
        ("null", None),
    ],
)
def test_a_number_command(text: str, value: float | None) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "hot",
        "nan",
        "NaN",
        "inf",
        "-Infinity",
        "1e9",
        "1e2",  # exponents: HA's number never sends them
        "1_000",
        "２０３",  # fullwidth digits: float() takes them
        "٢٠٣",  # Arabic-Indic digits
        "-500",
        "0x10",
        "9" * 5000,
    ],
)
def test_a_number_command_is_refused(text: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_number(text)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 120


@pytest.mark.parametrize(
    "topic",
    [
        f"{ROOT}/device/{SID}/probe/²/target/set",
        f"{ROOT}/device/{SID}/probe/{'9' * 5000}/target/set",
        f"{ROOT}/device/{SID}/probe/02/target/set",
        f"{ROOT}/device/{SID}/probe/0/target/set",
        f"{ROOT}/device/{SID}/probe/-1/target/set",
        f"{ROOT}/device/{SID}/probe/1 /target/set",
        f"{ROOT}/device/{SID}/probe/١/target/set",
        f"{ROOT}/device/10:06/probe/1/target/set",
        f"{ROOT}/device/{'x' * 5000}/probe/1/target/set",
        f"{ROOT}/device//probe/1/target/set",
        f"{ROOT}/device/{SID}/probe/1/target",
        f"{ROOT}/device/{SID}/probe/1/target/set/more",
        f"{ROOT}/device/{SID}/session/pause/set",
        f"{ROOT}/device/{SID}/probes/1/target/set",
        f"other/home/device/{SID}/probe/1/target/set",
    ],
)
def test_a_command_topic_is_parsed_strictly(topic: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_command(ROOT, topic, b"200")
    assert len(str(refused.value)) < 150  # a prefix of the topic at most, never all of it


def test_valid_commands() -> None:
    assert parse_command(ROOT, TARGET_TOPIC, b"203") == Command(
        topic=CommandTopic(sid=SID, key="target", channel=2), value=203.0
    )
    low = parse_command(ROOT, f"{ROOT}/device/{SID}/probe/12/range_low/set", b"0")
    assert low == Command(topic=CommandTopic(sid=SID, key="range_low", channel=12))
    start = parse_command(ROOT, f"{ROOT}/device/{SID}/session/start/set", b'{"name": "Ribs"}')
    assert start == Command(topic=CommandTopic(sid=SID, key="start"), name="Ribs")
    end = parse_command(ROOT, f"{ROOT}/device/{SID}/session/end/set", b"PRESS")
    assert end == Command(topic=CommandTopic(sid=SID, key="end"))
    # Another module's probe command under the alerts' wildcard: not ours, not an error.
    assert parse_command(ROOT, f"{ROOT}/device/{SID}/probe/1/colour/set", b"x") is None


def test_a_payload_over_the_limit_is_refused_by_its_size() -> None:
    payload = b"1" * (5 * 1024 * 1024)
    with pytest.raises(CommandError) as refused:
        parse_command(ROOT, TARGET_TOPIC, payload)
    assert str(refused.value) == f"{len(payload)} bytes, over the limit of {MAX_COMMAND_BYTES}"
    ok = b" " * (MAX_COMMAND_BYTES - 3) + b"203"
    assert parse_command(ROOT, TARGET_TOPIC, ok) == Command(
        topic=CommandTopic(sid=SID, key="target", channel=2), value=203.0
    )


# ---------------------------------------------------------------------------- fuzzing

LEVEL = st.text(max_size=8) | st.sampled_from(
    ["device", "probe", "session", "set", "start", "end", "target", "range_low", "²", "01", SID]
)
TOPIC = st.lists(LEVEL, max_size=8).map("/".join) | st.builds(
    lambda sid, channel, key: f"{ROOT}/device/{sid}/probe/{channel}/{key}/set",
    st.text(max_size=6) | st.just(SID),
    st.text(max_size=5) | st.integers(-5, 2000).map(str),
    st.sampled_from(["target", "range_low", "range_high", "other", ""]),
)
PAYLOAD = (
    st.binary(max_size=300)
    | st.text(max_size=40).map(str.encode)
    | st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).encode())
    | st.integers().map(lambda n: str(n).encode())
    | st.binary(min_size=MAX_COMMAND_BYTES + 1, max_size=MAX_COMMAND_BYTES + 2)
)


@given(st.one_of(TOPIC, st.text(max_size=80)), PAYLOAD)
def test_no_exception_but_a_refusal_escapes(topic: str, payload: bytes) -> None:
    try:
        command = parse_command(ROOT, topic, payload)
    except CommandError as exc:
        text = str(exc)
        assert "\n" not in text and len(text) < 200
        return
    if command is not None and command.value is not None:
        assert -100 <= command.value <= 1000


@given(
    st.text(alphabet="0123456789ABCDEF:", min_size=1, max_size=17),
    st.integers(1, 999),
    st.sampled_from(["target", "range_low", "range_high"]),
    st.decimals(min_value=-100, max_value=1000, places=1, allow_nan=False),
)
def test_valid_commands_still_work(serial: str, channel: int, key: str, value: object) -> None:
    sid = device_id(serial)
    topic = f"{ROOT}/device/{sid}/probe/{channel}/{key}/set"
    command = parse_command(ROOT, topic, str(value).encode())
    assert command is not None and command.topic == CommandTopic(sid=sid, key=key, channel=channel)
    assert command.value == (None if float(str(value)) == 0 else float(str(value)))


def test_the_cook_method_select_takes_exactly_one_of_its_options() -> None:
    from grillstats_bridge.cook.model import CookMethod
    from grillstats_bridge.ha.cook_entities import COOK_METHODS

    assert tuple(m.value for m in CookMethod) == COOK_METHODS  # the table's copy, pinned
    topic = f"{ROOT}/device/{SID}/probe/2/cook_method/set"
    command = parse_command(ROOT, topic, b"reverse_sear")
    assert command is not None and command.option == "reverse_sear" and command.value is None
    for bad in (b"Reverse_Sear", b" auto", b"", b"smoke"):
        with pytest.raises(CommandError, match="not one of auto, reverse_sear"):
            parse_command(ROOT, topic, bad)
