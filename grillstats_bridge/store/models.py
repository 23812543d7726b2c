"""The database tables: the seed's five, exactly as specified, and the bridge's additions.

The seed's columns keep the seed's names, types, lengths, nullability, uniqueness
and defaults; later features add tables and columns (each in a migration of its
own), never change the seed's. Every timestamp is timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from grillstats_bridge.domain import ensure_utc, utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that is always aware UTC in Python, whatever the backend stores.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are
    stored as naive UTC and given their zone back when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = ensure_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else ensure_utc(value)


intpk = Annotated[int, mapped_column(sa.Integer, primary_key=True)]
NOW = sa.func.now()


def created_at_column() -> Mapped[datetime | None]:
    """``created_at``: Default: Now."""
    return mapped_column(UTCDateTime(), default=utcnow, server_default=NOW)


def updated_at_column() -> Mapped[datetime | None]:
    """``updated_at``: Default: Now, OnUpdate: Now."""
    return mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=NOW)


class Base(DeclarativeBase):
    """Declarative base; constraint names follow one convention so migrations can name them."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
    }


# ------------------------------------------------------------------------- the seed's tables


class User(Base):
    """A person using the bridge (seed table ``users``)."""

    __tablename__ = "users"

    id: Mapped[intpk]
    email: Mapped[str] = mapped_column(sa.String(120), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    name: Mapped[str | None] = mapped_column(sa.String(100))
    is_active: Mapped[bool | None] = mapped_column(
        sa.Boolean, default=True, server_default=sa.true()
    )
    failed_login_attempts: Mapped[int | None] = mapped_column(
        sa.Integer, default=0, server_default=sa.text("0")
    )
    last_failed_login: Mapped[datetime | None] = mapped_column(UTCDateTime())
    is_locked: Mapped[bool | None] = mapped_column(
        sa.Boolean, default=False, server_default=sa.false()
    )
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()

    devices: Mapped[list[Device]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="Device.id"
    )
    alerts: Mapped[list[TemperatureAlert]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="TemperatureAlert.id"
    )
    sessions: Mapped[list[GrillingSession]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="GrillingSession.id"
    )
    credentials: Mapped[ThermoWorksCredentials | None] = relationship(
        back_populates="user", cascade="all, delete-orphan", uselist=False
    )

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class Device(Base):
    """A ThermoWorks device of a user (seed table ``devices``); ``device_id`` is the serial."""

    __tablename__ = "devices"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), nullable=False)
    device_id: Mapped[str] = mapped_column(sa.String(50), unique=True, nullable=False)
    nickname: Mapped[str | None] = mapped_column(sa.String(100))
    status: Mapped[str | None] = mapped_column(
        sa.String(20), default="offline", server_default="offline"
    )
    is_active: Mapped[bool | None] = mapped_column(
        sa.Boolean, default=True, server_default=sa.true()
    )
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()
    # Added by the cloud sync (0002_cloud): what the cloud last said about the device.
    cloud_label: Mapped[str | None] = mapped_column(sa.String(100))
    renamed_by_user: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    model: Mapped[str | None] = mapped_column(sa.String(50))
    device_type: Mapped[str | None] = mapped_column(sa.String(20))
    firmware: Mapped[str | None] = mapped_column(sa.String(50))
    battery: Mapped[int | None] = mapped_column(sa.SmallInteger)
    signal_dbm: Mapped[int | None] = mapped_column(sa.SmallInteger)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    raw: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # devices.lasting_fields

    user: Mapped[User] = relationship(back_populates="devices")
    probes: Mapped[list[ProbeRow]] = relationship(
        back_populates="device", cascade="all, delete-orphan", order_by="ProbeRow.channel"
    )

    def __repr__(self) -> str:
        return f"<Device {self.id} {self.device_id}>"


class TemperatureAlert(Base):
    """A user's temperature alert on one probe (seed table ``temperature_alerts``)."""

    __tablename__ = "temperature_alerts"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), nullable=False)
    device_id: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    probe_id: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    name: Mapped[str | None] = mapped_column(sa.String(100))
    description: Mapped[str | None] = mapped_column(sa.Text)
    alert_type: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    target_temperature: Mapped[float | None] = mapped_column(sa.Float)
    min_temperature: Mapped[float | None] = mapped_column(sa.Float)
    max_temperature: Mapped[float | None] = mapped_column(sa.Float)
    threshold_value: Mapped[float | None] = mapped_column(sa.Float)
    temperature_unit: Mapped[str | None] = mapped_column(
        sa.String(5), default="F", server_default="F"
    )
    is_active: Mapped[bool | None] = mapped_column(
        sa.Boolean, default=True, server_default=sa.true()
    )
    last_triggered: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()
    # a target alert's cook method as the person declared it (cook.model.CookMethod;
    # NULL: auto); migration 0013_cook_method
    cook_method: Mapped[str | None] = mapped_column(sa.String(20))

    user: Mapped[User] = relationship(back_populates="alerts")

    def __repr__(self) -> str:
        return f"<TemperatureAlert {self.id} {self.alert_type} {self.device_id}/{self.probe_id}>"


class GrillingSession(Base):
    """A cook on one device (seed table ``grilling_sessions``)."""

    __tablename__ = "grilling_sessions"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), nullable=False)
    device_id: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    name: Mapped[str | None] = mapped_column(sa.String(100))
    session_type: Mapped[str | None] = mapped_column(
        sa.String(20), default="auto", server_default="auto"
    )
    status: Mapped[str | None] = mapped_column(
        sa.String(20), default="active", server_default="active"
    )
    start_time: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, server_default=NOW
    )
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    max_temperature: Mapped[float | None] = mapped_column(sa.Float)
    min_temperature: Mapped[float | None] = mapped_column(sa.Float)
    avg_temperature: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()
    # Bridge additions (0006_sessions); the seed's columns above are untouched.
    temperature_unit: Mapped[str | None] = mapped_column(sa.String(1))  # of min/max/avg
    auto_named: Mapped[bool | None] = mapped_column(
        sa.Boolean, default=False, server_default=sa.false()
    )
    end_reason: Mapped[str | None] = mapped_column(sa.String(20))
    # 0007_session_events: when the broker acknowledged the session's "ended" event.
    # Empty on an ended session: the event waits (the outbox, like alert_history's).
    end_published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # 0008_cook: the session's (first probe's longest) stall, from the cook tracker.
    stall_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stall_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stall_seconds: Mapped[float | None] = mapped_column(sa.Float)
    # 0012_cook_learning: what the cook teaches the next ones (cook.calibration): the
    # probe that reached its target first, the target in cook_unit, when, and its paces.
    cook_probe: Mapped[int | None] = mapped_column(sa.SmallInteger)
    cook_target: Mapped[float | None] = mapped_column(sa.Float)
    cook_unit: Mapped[str | None] = mapped_column(sa.String(1))
    cook_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cook_pace: Mapped[float | None] = mapped_column(sa.Float)  # actual / predicted time left
    cook_climb_pace: Mapped[float | None] = mapped_column(sa.Float)  # after / before stall
    cook_sear_at: Mapped[float | None] = mapped_column(sa.Float)  # the pit raised late: meat then
    cook_sear_seconds: Mapped[float | None] = mapped_column(sa.Float)  # from then to the target

    user: Mapped[User] = relationship(back_populates="sessions")

    def __repr__(self) -> str:
        return f"<GrillingSession {self.id} {self.device_id} {self.status}>"


class ThermoWorksCredentials(Base):
    """A user's link to the ThermoWorks cloud (seed table ``thermoworks_credentials``).

    ``user_id`` is unique: the seed's one-to-one relationship, enforced by the database.
    Tokens are stored encrypted (see ``security.py``), never in clear.
    """

    __tablename__ = "thermoworks_credentials"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), nullable=False, unique=True)
    access_token: Mapped[str | None] = mapped_column(sa.Text)
    refresh_token: Mapped[str | None] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()
    # Added by account linking (0002_cloud). The stored password is Fernet-encrypted like
    # the tokens and present only when the owner asked for it (--store-password).
    provider: Mapped[str] = mapped_column(
        sa.String(20), nullable=False, default="thermoworks", server_default="thermoworks"
    )
    tw_email: Mapped[str | None] = mapped_column(sa.String(120))
    uid: Mapped[str | None] = mapped_column(sa.String(128))
    account_id: Mapped[str | None] = mapped_column(sa.String(128))
    stored_password: Mapped[str | None] = mapped_column(sa.Text)
    # "ok", or "needs_reauth" once the credentials stopped working (with why and since when).
    state: Mapped[str] = mapped_column(
        sa.String(20), nullable=False, default="ok", server_default="ok"
    )
    state_reason: Mapped[str | None] = mapped_column(sa.String(255))
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(back_populates="credentials")

    def __repr__(self) -> str:
        return f"<ThermoWorksCredentials {self.id} user={self.user_id}>"


# ------------------------------------------------------------------------- the bridge's additions
# Each feature adds its tables below, with a migration of its own.


class ReadingRow(Base):
    """One stored probe value (``domain.Reading``): written only when the cloud's
    ``lastTelemetrySaved`` moved, pruned after ``storage.retention_days``.

    ``device_id`` is the serial, as in the seed's alert and session tables. The
    unique (device, probe, time) index makes a replayed write harmless and serves
    per-probe time-range queries.
    """

    __tablename__ = "readings"
    __table_args__ = (sa.UniqueConstraint("device_id", "probe", "time"), sa.Index(None, "time"))

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    probe: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    value: Mapped[float] = mapped_column(sa.Float, nullable=False)
    unit: Mapped[str] = mapped_column(sa.String(1), nullable=False)

    def __repr__(self) -> str:
        return f"<Reading {self.device_id}/{self.probe} {self.time} {self.value}{self.unit}>"


class ProbeRow(Base):
    """One channel of a device as last synced from the cloud (``domain.Probe``).

    Alarm values are in the probe's ``unit`` (the parser converts them); ``raw``
    holds every field of the cloud's channel document, unknown ones too, but those that
    move with every reading (``store.devices.lasting_fields``).
    """

    __tablename__ = "probes"
    __table_args__ = (sa.UniqueConstraint("device_id", "channel"),)

    id: Mapped[intpk]
    device_id: Mapped[int] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False
    )
    channel: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    label: Mapped[str | None] = mapped_column(sa.String(100))
    unit: Mapped[str] = mapped_column(sa.String(1), nullable=False)
    last_value: Mapped[float | None] = mapped_column(sa.Float)
    last_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    connected: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    status: Mapped[str | None] = mapped_column(sa.String(20))
    alarm_high_enabled: Mapped[bool | None] = mapped_column(sa.Boolean)
    alarm_high_alarming: Mapped[bool | None] = mapped_column(sa.Boolean)
    alarm_high_value: Mapped[float | None] = mapped_column(sa.Float)
    alarm_low_enabled: Mapped[bool | None] = mapped_column(sa.Boolean)
    alarm_low_alarming: Mapped[bool | None] = mapped_column(sa.Boolean)
    alarm_low_value: Mapped[float | None] = mapped_column(sa.Float)
    raw: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()

    device: Mapped[Device] = relationship(back_populates="probes")

    def __repr__(self) -> str:
        return f"<ProbeRow {self.device_id}/{self.channel} {self.last_value}{self.unit}>"


class AlertStateRow(Base):
    """The alert engine's arming state of one alert (``alerts.AlertState``).

    It is what keeps a condition that fired before a restart from firing again
    after it. Written only when the state changes (a firing, a re-arm), never per reading.
    ``rule_key`` is the rule the state belongs to: a state saved for another target
    or range is ignored. No foreign key on purpose: the CLI may remove an alert while
    the daemon still holds it, and the daemon's write must not fail for that; the
    service deletes orphans when it loads.
    """

    __tablename__ = "alert_states"

    alert_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    rule_key: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    arm: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    low_arm: Mapped[str | None] = mapped_column(sa.String(10))
    last_fired: Mapped[datetime | None] = mapped_column(UTCDateTime())
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    window_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = updated_at_column()

    def __repr__(self) -> str:
        return f"<AlertState {self.alert_id} {self.arm}/{self.low_arm}>"


class AlertHistory(Base):
    """Every alert firing, kept as history and used as the outbox for MQTT.

    A firing is written in the transaction that judged its reading, with the
    reading's time (``fired_at``); ``published_at`` stays empty until the broker
    acknowledged it, so firings wait here while the broker is down and go out
    later in ``id`` order. The alert's name, probe and threshold are copied:
    the history outlives changes to the alert and its removal (hence no foreign
    key on ``alert_id``, which keeps the id of a removed alert).
    """

    __tablename__ = "alert_history"
    __table_args__ = (
        sa.Index(None, "user_id", "fired_at"),
        sa.Index(None, "published_at", "id"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
    )
    alert_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    device_id: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    probe: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    alert_type: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    event_type: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    alert_name: Mapped[str | None] = mapped_column(sa.String(100))
    value: Mapped[float] = mapped_column(sa.Float, nullable=False)
    unit: Mapped[str] = mapped_column(sa.String(1), nullable=False)
    threshold: Mapped[float] = mapped_column(sa.Float, nullable=False)
    change: Mapped[float | None] = mapped_column(sa.Float)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_at: Mapped[datetime | None] = created_at_column()
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"<AlertHistory {self.id} alert={self.alert_id} {self.event_type} {self.fired_at}>"


# Sessions (0006): indexes on the seed's table, per-probe statistics, tracker state.

ACTIVE_SESSION = sa.text("status = 'active'")
# At most one active session per device, whoever starts it (the daemon or the CLI).
sa.Index(
    "uq_grilling_sessions_active_device",
    GrillingSession.device_id,
    unique=True,
    postgresql_where=ACTIVE_SESSION,
    sqlite_where=ACTIVE_SESSION,
)
sa.Index(None, GrillingSession.device_id, GrillingSession.start_time)
sa.Index(None, GrillingSession.user_id, GrillingSession.start_time)
sa.Index(None, GrillingSession.end_published_at, GrillingSession.id)  # 0007: the outbox


class GrillingSessionProbe(Base):
    """One probe's statistics over one session, in the session's unit.

    ``weighted_seconds`` is the time the time-weighted average covers (gaps while
    the probe was unplugged or the device offline are left out).
    """

    __tablename__ = "grilling_session_probes"
    __table_args__ = (sa.UniqueConstraint("session_id", "probe"),)

    id: Mapped[intpk]
    session_id: Mapped[int] = mapped_column(
        sa.ForeignKey("grilling_sessions.id", ondelete="CASCADE"), nullable=False
    )
    probe: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    label: Mapped[str | None] = mapped_column(sa.String(100))
    unit: Mapped[str] = mapped_column(sa.String(1), nullable=False)
    sample_count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    min_temperature: Mapped[float | None] = mapped_column(sa.Float)
    max_temperature: Mapped[float | None] = mapped_column(sa.Float)
    avg_temperature: Mapped[float | None] = mapped_column(sa.Float)
    weighted_seconds: Mapped[float] = mapped_column(sa.Float, nullable=False)
    first_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_value: Mapped[float | None] = mapped_column(sa.Float)

    def __repr__(self) -> str:
        return f"<GrillingSessionProbe session={self.session_id} probe={self.probe}>"


class SessionTrackerState(Base):
    """What the session tracker knows of one device (``sessions.SessionTracker.export_state``),
    saved with every poll so that a restart resumes where it stopped."""

    __tablename__ = "session_tracker_states"

    device_id: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    def __repr__(self) -> str:
        return f"<SessionTrackerState {self.device_id}>"


class MqttPublication(Base):
    """A retained MQTT topic this bridge instance published (issue 4).

    Discovery configs, states and availability topics are remembered so that what
    disappears (a device, a probe, a kind of entity) is cleared with an empty
    retained message instead of staying in Home Assistant as a ghost, and so that
    ``mqtt cleanup`` can remove everything an instance ever published. ``owner`` is
    the scope that decides whether a topic is still wanted: ``bridge`` or
    ``user:<id>`` (the account whose poll lists the device).
    """

    __tablename__ = "mqtt_publications"
    __table_args__ = (
        sa.UniqueConstraint("instance_id", "topic"),
        sa.Index(None, "instance_id", "owner"),
    )

    id: Mapped[intpk]
    instance_id: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    topic: Mapped[str] = mapped_column(sa.String(512), nullable=False)
    owner: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # config, state
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()

    def __repr__(self) -> str:
        return f"<MqttPublication {self.instance_id} {self.kind} {self.topic}>"


class ApiToken(Base):
    """A user's bearer token for the REST API (0009_api_tokens): only its SHA-256 is kept.

    ``prefix`` (the token's first characters) lets a user tell tokens apart in a list;
    a revoked token stays, with ``revoked_at``, so that the list says what happened.
    """

    __tablename__ = "api_tokens"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(sa.String(12), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} {self.prefix}… user={self.user_id}>"


class CookEventRow(Base):
    """A cook event (stall started, stall ended, ready), kept as the cook's MQTT outbox.

    Written in the transaction whose readings showed it, with the time it happened
    (``at``); ``published_at`` stays empty until the broker acknowledged it, so events
    wait here while the broker is down and go out later in ``id`` order (0011_cook_events).
    ``user_id`` is the device's owner then: the outbox can be narrowed to some users'.
    """

    __tablename__ = "cook_events"
    __table_args__ = (
        sa.Index(None, "published_at", "id"),
        sa.Index(None, "user_id", "at"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    device_id: Mapped[str] = mapped_column(sa.String(50), nullable=False)  # the serial
    session_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("grilling_sessions.id", ondelete="SET NULL")
    )
    probe: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    value: Mapped[float] = mapped_column(sa.Float, nullable=False)
    unit: Mapped[str] = mapped_column(sa.String(1), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    stall_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stall_seconds: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[datetime | None] = created_at_column()
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"<CookEventRow {self.id} {self.device_id}/{self.probe} {self.kind} {self.at}>"


class SessionCookProbe(Base):
    """A probe with a target on a session: the cook tracker's latest figures (0011_cook_events).

    Written with every poll that changes them while the session runs (the estimate, its
    band, the state, the progress), with the probe's first stall and when it first reached
    its target; temperatures in ``unit`` (the cook's unit, ``cook.temperature_unit``).
    """

    __tablename__ = "session_cook_probes"
    __table_args__ = (sa.UniqueConstraint("session_id", "probe"),)

    id: Mapped[intpk]
    session_id: Mapped[int] = mapped_column(
        sa.ForeignKey("grilling_sessions.id", ondelete="CASCADE"), nullable=False
    )
    probe: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    unit: Mapped[str] = mapped_column(sa.String(1), nullable=False)
    target: Mapped[float] = mapped_column(sa.Float, nullable=False)
    state: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    method: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    # the declared cook method (auto, reverse_sear); NULL: not recorded (before 0014)
    cook_method: Mapped[str | None] = mapped_column(sa.String(20))
    value: Mapped[float | None] = mapped_column(sa.Float)
    progress: Mapped[float | None] = mapped_column(sa.Float)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_low: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_high: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stall_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stall_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stall_seconds: Mapped[float | None] = mapped_column(sa.Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    def __repr__(self) -> str:
        return f"<SessionCookProbe session={self.session_id} probe={self.probe} {self.state}>"


class AccountLease(Base):
    """Which bridge process polls a linked account (0010_leases; PostgreSQL only).

    ``token`` (the fencing token) grows by one every time the lease changes hands:
    a process writes an account's data only while the row still names it with the
    token it took (``store.leases``). ``owner`` is empty for a lease given back.
    """

    __tablename__ = "account_leases"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("thermoworks_credentials.user_id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    token: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, server_default="0")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"<AccountLease user={self.user_id} owner={self.owner} token={self.token}>"


class BridgeProcess(Base):
    """A running bridge process (0010_leases): live while its heartbeat is recent."""

    __tablename__ = "bridge_processes"

    process_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    instance_id: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    host: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    pid: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    def __repr__(self) -> str:
        return f"<BridgeProcess {self.process_id}>"
