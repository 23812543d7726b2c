"""Configuration: one YAML file plus environment overrides -> one frozen, validated object.

Every setting is declared once, below, as a field of a section dataclass with its
default and a one-line help text. The loader, the environment overrides, the
``*_file`` secret variants, ``config example`` (and so ``config.example.yaml``)
and ``config show`` are all derived from those declarations, so adding a section
is: write the dataclass, add one field to :class:`Config`.

Precedence, lowest first: defaults < YAML file < ``GRILLSTATS_<SECTION>_<KEY>``
(and the seed's ``SQLALCHEMY_*`` names) < command-line options.
"""

from __future__ import annotations

import dataclasses
import re
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grillstats_bridge.errors import GrillstatsError

ENV_PREFIX = "GRILLSTATS_"
CONFIG_ENV = "GRILLSTATS_CONFIG"
SYSTEM_CONFIG = Path("/etc/grillstats-bridge/config.yaml")
# Environment variables with our prefix that are not settings.
_META_ENV = frozenset({CONFIG_ENV, "GRILLSTATS_TEST_PG_URL", "GRILLSTATS_TEST_MQTT"})


class ConfigError(GrillstatsError):
    """A bad configuration value; the message names the key and what is wrong."""


def setting(
    default: Any,
    help: str,
    *,
    secret: bool = False,
    file_variant: bool | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    duration: bool = False,
    env_aliases: tuple[str, ...] = (),
) -> Any:
    """Declare one setting: its default, its help text and how it is validated.

    ``secret`` settings are redacted when shown and, unless ``file_variant`` is
    False, may be given as ``<key>_file`` (a path whose content is the value).
    ``duration`` settings are seconds and also accept ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``.
    """
    metadata = {
        "help": help,
        "secret": secret,
        "file_variant": secret if file_variant is None else file_variant,
        "minimum": minimum,
        "maximum": maximum,
        "duration": duration,
        "env_aliases": env_aliases,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """Where the bridge keeps users, devices, readings, alerts and sessions."""

    url: str = setting(
        "sqlite:///grillstats.db",
        "SQLAlchemy URL: sqlite:///FILE or postgresql://USER:PASSWORD@HOST:PORT/DB (psycopg2)",
        secret=True,
        file_variant=True,
    )
    pool_size: int = setting(
        10,
        "Connections kept open in the pool",
        minimum=1,
        env_aliases=("SQLALCHEMY_POOL_SIZE",),
    )
    max_overflow: int = setting(
        20,
        "Connections allowed beyond pool_size under load",
        minimum=0,
        env_aliases=("SQLALCHEMY_MAX_OVERFLOW",),
    )
    pool_recycle: int = setting(
        3600,
        "Seconds after which a pooled connection is replaced (-1: never)",
        minimum=-1,
        env_aliases=("SQLALCHEMY_POOL_RECYCLE",),
    )
    pool_pre_ping: bool = setting(
        True,
        "Test each connection before use, replacing dead ones",
        env_aliases=("SQLALCHEMY_POOL_PRE_PING",),
    )
    pool_timeout: int = setting(
        30,
        "Seconds to wait for a free connection before failing",
        minimum=1,
        env_aliases=("SQLALCHEMY_POOL_TIMEOUT",),
    )
    statement_timeout_ms: int = setting(
        30000, "PostgreSQL only: statement_timeout on every pooled connection (ms)", minimum=0
    )
    sqlite_busy_timeout_ms: int = setting(
        5000, "SQLite only: how long a writer waits for a lock (ms)", minimum=0
    )
    lease_time: float = setting(
        30.0,
        "PostgreSQL only: a stopped or cut-off bridge process's accounts are polled by "
        "another process within this time (account leases, renewed every third of it)",
        minimum=1,
        duration=True,
    )

    def validate(self) -> None:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", self.url):
            raise ConfigError(
                "database.url: must start with sqlite:// or postgresql:// "
                "(other databases are not supported)"
            )


@dataclass(frozen=True, kw_only=True)
class SecurityConfig:
    """Bridge user accounts and secrets at rest."""

    max_failed_logins: int = setting(
        5, "Wrong passwords in a row before a user is locked", minimum=1
    )
    lockout_minutes: int = setting(
        15, "Minutes a locked user stays locked (or until 'user unlock')", minimum=1
    )
    bcrypt_rounds: int = setting(12, "bcrypt cost factor for user passwords", minimum=4, maximum=16)
    encryption_key: str = setting(
        "",
        "Key for ThermoWorks tokens and passwords at rest (Fernet, urlsafe base64); "
        "empty: use key_file",
        secret=True,
    )
    key_file: str = setting(
        "grillstats.key",
        "File holding the encryption key, created (mode 0600) on first use when absent and "
        "no secret is stored yet (a relative path: $CREDENTIALS_DIRECTORY first); "
        "losing it means linking every account again",
    )


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    """What the bridge writes to its log (standard error, or the journal under systemd)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "INFO", "Log level: DEBUG, INFO, WARNING or ERROR"
    )


@dataclass(frozen=True, kw_only=True)
class ThermoworksConfig:
    """The ThermoWorks cloud (Firebase): provider, endpoints and request behaviour."""

    provider: Literal["thermoworks", "eti", "custom"] = setting(
        "thermoworks",
        "Default cloud for 'account link': thermoworks (US), eti (UK / international), or "
        "custom (then set api_key, referer, and app_id or project_id); each linked account "
        "keeps its own",
    )
    api_key: str = setting("", "Firebase web API key (public, not a secret); empty: the provider's")
    app_id: str = setting("", "Firebase app id for the project lookup; empty: the provider's")
    referer: str = setting("", "Referer header sent with every request; empty: the provider's")
    project_id: str = setting("", "Firestore project id; empty: looked up from app_id once per run")
    identitytoolkit_url: str = setting(
        "https://identitytoolkit.googleapis.com",
        "Base URL of the sign-in service (the simulator's: http://HOST:PORT/identitytoolkit)",
    )
    securetoken_url: str = setting(
        "https://securetoken.googleapis.com",
        "Base URL of the token refresh service (simulator: http://HOST:PORT/securetoken)",
    )
    firebase_url: str = setting(
        "https://firebase.googleapis.com",
        "Base URL of the project lookup service (simulator: http://HOST:PORT/firebase)",
    )
    firestore_url: str = setting(
        "https://firestore.googleapis.com",
        "Base URL of the Firestore REST service (simulator: http://HOST:PORT/firestore)",
    )
    timeout: float = setting(
        15.0,
        "Seconds to wait for a connection, and again for an answer, on every cloud request",
        minimum=0.1,
        duration=True,
    )
    request_deadline: float = setting(
        60.0,
        "Seconds a whole cloud request may take, answer included, however slowly it arrives",
        minimum=0.1,
        duration=True,
    )
    max_response_bytes: int = setting(
        8 * 1024 * 1024,
        "Largest cloud answer read, in bytes; a larger one is refused while it is read",
        minimum=64 * 1024,
    )
    refresh_margin: float = setting(
        300.0,
        "Refresh the id token when less than this remains (at most half its life; tokens live 1 h)",
        minimum=0,
        duration=True,
    )


_MQTT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    """The MQTT broker and Home Assistant discovery."""

    host: str = setting("localhost", "Broker host name or address")
    port: int = setting(1883, "Broker port (8883 is usual with TLS)", minimum=1, maximum=65535)
    username: str | None = setting(None, "User name for the broker; empty: anonymous")
    password: str | None = setting(None, "Password for the broker", secret=True)
    tls: bool = setting(False, "Connect with TLS (the certificate is verified unless tls_insecure)")
    tls_ca_file: str | None = setting(None, "CA certificate file; empty: the system's CAs")
    tls_certfile: str | None = setting(None, "Client certificate file (mutual TLS)")
    tls_keyfile: str | None = setting(
        None, "Client private key file (mutual TLS); empty: the key is in tls_certfile"
    )
    tls_insecure: bool = setting(
        False,
        "Skip certificate and host name verification (never do this on a network you do not "
        "control)",
    )
    client_id: str = setting("", "MQTT client id; empty: grillstats-bridge-<instance_id>")
    keepalive: int = setting(60, "Seconds between keep-alive pings", minimum=5, maximum=65535)
    base_topic: str = setting(
        "grillstats", "Root of every state topic: <base_topic>/<instance_id>/..."
    )
    discovery_prefix: str = setting("homeassistant", "Home Assistant discovery prefix")
    instance_id: str = setting(
        "grillstats",
        "Identifies this bridge in topics, unique ids and the client id (letters, digits, "
        "_ and -); two bridges on one broker need different ids",
    )
    discovery: bool = setting(True, "Publish Home Assistant discovery configs")
    per_user_topics: bool = setting(
        False,
        "Put each user's devices under <base_topic>/<instance_id>/user/<user id>/ (and their "
        "discovery configs under node id <instance_id>_u<user id>), so that a broker ACL "
        "('mqtt acl') gives each user's login their own devices only",
    )
    acl_login: str = setting(
        "grill-{user_id}",
        "The broker login of each bridge user in 'mqtt acl' ({user_id}, {email})",
    )
    ha_birth_delay: float = setting(
        5.0,
        "On Home Assistant's birth message, republish after a random delay of up to this",
        minimum=0,
        duration=True,
    )
    max_queue: int = setting(
        10000,
        "State topics kept while the broker is away (the latest value per topic wins)",
        minimum=100,
    )
    max_events: int = setting(
        1000,
        "Events (alert firings) kept while the broker is away; beyond this they are refused "
        "and the caller keeps them",
        minimum=10,
    )
    reconnect_min_delay: float = setting(
        1.0, "First wait before reconnecting to the broker", minimum=0.01, duration=True
    )
    reconnect_max_delay: float = setting(
        60.0,
        "Longest wait between reconnection attempts (the wait doubles up to this)",
        minimum=0.01,
        duration=True,
    )

    def validate(self) -> None:
        if not _MQTT_ID.match(self.instance_id):
            raise ConfigError(
                "mqtt.instance_id: only letters, digits, _ and - (at most 64), "
                f"got {self.instance_id!r}"
            )
        for key in ("base_topic", "discovery_prefix"):
            topic = getattr(self, key)
            if not topic or any(c in topic for c in "+#\0") or "" in topic.split("/"):
                raise ConfigError(
                    f"mqtt.{key}: must be a topic without wildcards, empty levels or leading "
                    f"or trailing /, got {topic!r}"
                )
        if self.client_id and any(c in self.client_id for c in "+#/\0"):
            raise ConfigError(
                f"mqtt.client_id: must not contain + # / or NUL, got {self.client_id!r}"
            )
        if not self.tls:
            for key in ("tls_ca_file", "tls_certfile", "tls_keyfile"):
                if getattr(self, key):
                    raise ConfigError(f"mqtt.{key}: set mqtt.tls: true to use TLS")
            if self.tls_insecure:
                raise ConfigError("mqtt.tls_insecure: set mqtt.tls: true to use TLS")
        if self.tls_keyfile and not self.tls_certfile:
            raise ConfigError("mqtt.tls_keyfile: needs mqtt.tls_certfile")
        try:
            login = self.acl_login.format(user_id=1, email="cook@example.com")
        except (KeyError, IndexError, ValueError):
            login = ""
        if not login.strip() or login == self.acl_login or any(c in login for c in " \t\n#"):
            raise ConfigError(
                "mqtt.acl_login: a login pattern with {user_id} or {email} and no spaces, "
                f"got {self.acl_login!r}"
            )
        if self.reconnect_min_delay > self.reconnect_max_delay:
            raise ConfigError("mqtt.reconnect_min_delay: must not exceed mqtt.reconnect_max_delay")

    @property
    def effective_client_id(self) -> str:
        """The configured client id, else one derived from the instance id (stable per instance)."""
        return self.client_id or f"grillstats-bridge-{self.instance_id}"


@dataclass(frozen=True, kw_only=True)
class PollingConfig:
    """How often each linked ThermoWorks account is polled."""

    active_interval: float = setting(
        15.0, "Seconds between polls while a cook is going on", minimum=1, duration=True
    )
    idle_interval: float = setting(
        300.0, "Seconds between polls when nothing is cooking", minimum=1, duration=True
    )
    min_interval: float = setting(5.0, "Polls are never closer than this", minimum=1, duration=True)
    max_backoff: float = setting(
        300.0,
        "Longest wait after repeated transient errors (5xx, timeouts, broken answers)",
        minimum=1,
        duration=True,
    )
    long_backoff: float = setting(
        1800.0,
        "Wait after a refusal that time may lift (too many sign-in attempts, 403, other 4xx)",
        minimum=1,
        duration=True,
    )
    max_retry_after: float = setting(
        3600.0,
        "Longest wait a cloud's Retry-After may impose (a longer one is cut, and logged)",
        minimum=1,
        duration=True,
    )
    workers: int = setting(
        4, "Accounts polled at the same time (a slow account never holds up the others)", minimum=1
    )
    hot_temperature: float = setting(
        120.0, "°F: a probe at or above this means a cook is going on (fast polling)"
    )
    change_threshold: float = setting(
        3.0, "°F: a probe moving this much between polls means a cook is going on", minimum=0
    )

    def validate(self) -> None:
        if self.active_interval > self.idle_interval:
            raise ConfigError("polling.active_interval: must not exceed polling.idle_interval")


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """What is kept in the database."""

    retention_days: int = setting(90, "Days readings are kept (0: forever)", minimum=0)
    buffer_size: int = setting(
        100000, "Readings held in memory while the database is unreachable", minimum=100
    )


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    """The health endpoint (GET /health), the web app and the REST API, on one address."""

    enabled: bool = setting(True, "Serve the health endpoint")
    host: str = setting("127.0.0.1", "Address to listen on")
    port: int = setting(8099, "Port to listen on (0: any free port)", minimum=0, maximum=65535)
    show_accounts: bool = setting(
        False, "List each account's label (a user's name or e-mail address) in /health"
    )
    web: bool = setting(True, "Serve the web app and the REST API (/api/v1) next to /health")
    admins: str = setting(
        "", "E-mail addresses (comma-separated) of the users who see the web app's admin page"
    )
    secure_cookie: bool = setting(
        False,
        "Mark the login cookie Secure (set it when a TLS proxy is in front; a request with "
        "X-Forwarded-Proto: https gets a Secure cookie anyway)",
    )
    session_idle: float = setting(
        1800.0, "A web login ends after this long without a request", minimum=60, duration=True
    )
    public_url: str = setting(
        "",
        "The web app's address as browsers reach it (e.g. https://grill.example.com/); "
        "Home Assistant's bridge device links to it. Empty: no link",
    )

    def validate(self) -> None:
        if self.public_url and not re.match(r"^https?://[^\s/?#]+(/[^\s]*)?$", self.public_url):
            raise ConfigError(
                f"http.public_url: an http:// or https:// address, got {self.public_url!r}"
            )


@dataclass(frozen=True, kw_only=True)
class AlertsConfig:
    """The temperature alert engine (the README's "Temperature alerts" explains each rule)."""

    # Hysteresis is given per unit, in the alert's own unit, because people set
    # alerts in round numbers of their unit: 2 °F and 1 °C are the usual margins
    # (1 °C is 1.8 °F, close to but not exactly 2 °F).
    hysteresis_f: float = setting(
        2.0, "Degrees a probe must move back before an alert set in °F re-arms", minimum=0
    )
    hysteresis_c: float = setting(
        1.0, "Degrees a probe must move back before an alert set in °C re-arms", minimum=0
    )
    rate_window: float = setting(
        300.0, "Window for rising / falling alerts", minimum=10, duration=True
    )
    rate_coverage: float = setting(
        0.8,
        "Share of rate_window the readings must span before a rising / falling alert is judged",
        minimum=0.5,
        maximum=1,
    )
    cooldown: float = setting(
        300.0, "Least time between two firings of one alert", minimum=0, duration=True
    )
    max_gap: float = setting(
        900.0,
        "Silence after which a range alert's low side waits for the probe to be back inside "
        "(0: never)",
        minimum=0,
        duration=True,
    )
    max_age: float = setting(
        900.0,
        "Readings older than this when they reach the engine never fire (0: no limit)",
        minimum=0,
        duration=True,
    )
    reload_interval: float = setting(
        10.0,
        "How often the daemon looks for alerts changed from the CLI",
        minimum=1,
        duration=True,
    )


@dataclass(frozen=True, kw_only=True)
class SessionsConfig:
    """Cooking sessions: when a cook starts and ends (README: "Cooking sessions")."""

    auto_detect: bool = setting(
        True, "Detect cooks from the temperatures (manual sessions work either way)"
    )
    temperature_unit: Literal["F", "C"] = setting(
        "F", "Unit of every temperature below: F or C (change the numbers with it)"
    )
    start_rise: float = setting(
        50.0, "A probe is hot this many degrees above its idle level...", minimum=1
    )
    start_min: float = setting(120.0, "...and never below this temperature")
    end_margin: float = setting(
        20.0,
        "A cook goes on until every probe is this far below its start threshold (hysteresis)",
        minimum=0,
    )
    idle_max: float = setting(
        100.0, "A probe's learned idle (ambient) level never goes above this temperature"
    )
    idle_time_constant: float = setting(
        7200.0,
        "How slowly the idle level follows a probe at rest (exponential time constant)",
        minimum=60,
        duration=True,
    )
    idle_band: float = setting(
        10.0,
        "A probe within this of its idle level is at rest; a cook is dated from when the "
        "device left rest",
        minimum=0,
    )
    start_hold: float = setting(
        300.0,
        "A device must stay hot this long before a cook is recognised",
        minimum=0,
        duration=True,
    )
    start_lookback: float = setting(
        14400.0,
        "A cook is dated at most this long before its first hot reading",
        minimum=0,
        duration=True,
    )
    end_after: float = setting(
        1800.0,
        "A cook ends once every probe has been cold or unplugged this long",
        minimum=60,
        duration=True,
    )
    offline_end_after: float = setting(
        3600.0,
        "...or once the device (or the bridge) has been silent this long",
        minimum=60,
        duration=True,
    )
    min_duration: float = setting(
        900.0,
        "An automatic session shorter than this is cancelled, not completed",
        minimum=0,
        duration=True,
    )
    timezone: str = setting(
        "UTC", "Time zone for the dates in generated session names (e.g. Europe/Paris)"
    )

    def validate(self) -> None:
        if self.end_margin >= self.start_rise:
            raise ConfigError(
                "sessions.end_margin: must be smaller than sessions.start_rise, "
                "or a cook could never end above the idle level"
            )
        if self.idle_band >= self.start_rise - self.end_margin:
            raise ConfigError(
                "sessions.idle_band: must be smaller than start_rise - end_margin, "
                "or a cooling grill would count as at rest while still cooking"
            )
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"sessions.timezone: unknown time zone {self.timezone!r} "
                "(use a name such as UTC or Europe/Paris)"
            ) from None


@dataclass(frozen=True, kw_only=True)
class CookConfig:
    """Cook predictions: when a probe reaches its target, stalls, cook states (docs/cook.md)."""

    temperature_unit: Literal["F", "C"] = setting(
        "F", "Unit of every temperature below: F or C (change the numbers with it)"
    )
    window: float = setting(
        2700.0,
        "Sliding window of readings the done-time estimate is fitted over",
        minimum=600,
        duration=True,
    )
    min_span: float = setting(
        600.0,
        "Readings must span this long before a probe gets an estimate",
        minimum=60,
        duration=True,
    )
    stall_rise: float = setting(
        2.0, "A probe is stalled while it rises at most this many degrees...", minimum=0
    )
    stall_time: float = setting(1800.0, "...over at least this long...", minimum=300, duration=True)
    stall_low: float = setting(140.0, "...between this temperature...")
    stall_high: float = setting(180.0, "...and this one")
    stall_expected: float = setting(
        10800.0,
        "How long a stall is assumed to last when estimating through it",
        minimum=0,
        duration=True,
    )
    stall_pit_max: float = setting(
        300.0,
        "A probe below the stall with a target above it expects one, on a pit at most this hot",
    )
    almost_ready: float = setting(
        5.0, "A probe is almost ready within this many degrees of its target", minimum=0
    )
    rest_drop: float = setting(
        2.0,
        "A probe that reached its target is resting once it falls this far below its peak",
        minimum=0,
    )
    cold_rise: float = setting(
        10.0,
        "A probe is still cold until it is this far above its first reading of the cook",
        minimum=0,
    )
    preheat_rate: float = setting(
        30.0, "A pit rising at least this many degrees per hour is preheating", minimum=0
    )
    sear_below: float = setting(
        15.0,
        "A probe whose cook method is reverse_sear is seared this many degrees below its target...",
        minimum=0,
    )
    sear_time: float = setting(
        480.0, "...and reaches its target this long after the sear began", minimum=0, duration=True
    )

    def validate(self) -> None:
        if self.stall_low >= self.stall_high:
            raise ConfigError("cook.stall_low: must be below cook.stall_high")
        if self.min_span > self.window:
            raise ConfigError("cook.min_span: must not be longer than cook.window")


class ConfigSection(typing.Protocol):
    """What the loader needs of a section: a dataclass, optionally with ``validate()``."""

    __dataclass_fields__: typing.ClassVar[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration; each field is one section of the YAML file."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    thermoworks: ThermoworksConfig = field(default_factory=ThermoworksConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    polling: PollingConfig = field(default_factory=PollingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    cook: CookConfig = field(default_factory=CookConfig)
    source: str | None = field(default=None, compare=False)  # the file it came from, if any

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some settings of one section changed (used by tests and the CLI)."""
        current = getattr(self, section)
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **values)})


def _sections() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "source"}


# --------------------------------------------------------------------------- loading


# --------------------------------------------------------------------------- showing
