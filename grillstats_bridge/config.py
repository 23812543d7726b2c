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
import difflib
import os
import re
import types
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

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
        "SQLAlchemy URL: sqlite:///FILE or postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB",
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

    def validate(self) -> None:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", self.url):
            raise ConfigError(
                "database.url: must start with sqlite:// or postgresql+psycopg2:// "
                "(other databases are not supported)"
            )

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def is_postgresql(self) -> bool:
        return self.url.startswith("postgresql")


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
        file_variant=False,
    )
    key_file: str = setting(
        "grillstats.key",
        "File holding the encryption key, created (mode 0600) on first use when absent; "
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
        1800.0, "Longest wait after repeated errors", minimum=1, duration=True
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
    """The health endpoint (GET /health)."""

    enabled: bool = setting(True, "Serve the health endpoint")
    host: str = setting("127.0.0.1", "Address to listen on")
    port: int = setting(8099, "Port to listen on (0: any free port)", minimum=0, maximum=65535)


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
    source: str | None = field(default=None, compare=False)  # the file it came from, if any

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some settings of one section changed (used by tests and the CLI)."""
        current = getattr(self, section)
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **values)})


def _sections() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "source"}


# --------------------------------------------------------------------------- loading


def find_config_file(
    explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path | None:
    """--config, $GRILLSTATS_CONFIG, ./config.yaml, then /etc/...; None: use defaults."""
    for given, origin in ((explicit, "--config"), (environ.get(CONFIG_ENV), CONFIG_ENV)):
        if given:
            path = Path(given)
            if not path.exists() or path.is_dir():
                raise ConfigError(f"{origin}: no such file: {path}")
            return path
    for candidate in (Path("config.yaml"), SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    search: bool = True,
) -> Config:
    """Read, merge and validate the configuration; raises :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    file_path = find_config_file(path, environ) if search or path else None
    raw: dict[str, Any] = {}
    if file_path is not None:
        raw = _read_yaml(file_path)
    sections = _sections()
    for name in raw:
        if name not in sections:
            raise ConfigError(f"{name}: unknown section{_did_you_mean(name, sections)}")
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        given = raw.get(name) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"{name}: must be a mapping of settings, got {type(given).__name__}")
        built[name] = _build_section(name, cls, given, environ)
    return Config(**built, source=str(file_path) if file_path else None)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _build_section(
    section: str, cls: type[Any], given: Mapping[str, Any], environ: Mapping[str, str]
) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    file_keys = {f"{n}_file": n for n, f in fields.items() if f.metadata.get("file_variant")}
    for key in given:
        if key not in fields and key not in file_keys:
            raise ConfigError(
                f"{section}.{key}: unknown key{_did_you_mean(key, [*fields, *file_keys])}"
            )
    _check_unknown_env(section, fields, file_keys, environ)

    values: dict[str, Any] = {}
    for name, fld in fields.items():
        key = f"{section}.{name}"
        raw, origin = _pick_raw(section, name, fld, given, environ)
        if raw is _MISSING:
            continue
        values[name] = _coerce(origin or key, raw, hints[name], fld.metadata)
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()
    return instance


_MISSING = object()


def _pick_raw(
    section: str,
    name: str,
    fld: dataclasses.Field[Any],
    given: Mapping[str, Any],
    environ: Mapping[str, str],
) -> tuple[Any, str | None]:
    """The winning raw value of one setting and where it came from (for error messages)."""
    env_name = f"{ENV_PREFIX}{section}_{name}".upper()
    if env_name in environ:
        return environ[env_name], env_name
    if fld.metadata.get("file_variant") and f"{env_name}_FILE" in environ:
        return _read_secret_file(f"{env_name}_FILE", environ[f"{env_name}_FILE"], environ), None
    for alias in fld.metadata.get("env_aliases", ()):
        if alias in environ:
            return environ[alias], alias
    file_key = f"{name}_file"
    if fld.metadata.get("file_variant") and given.get(file_key) is not None:
        if given.get(name) not in (None, ""):
            raise ConfigError(f"{section}.{name}: give either {name} or {file_key}, not both")
        return _read_secret_file(f"{section}.{file_key}", given[file_key], environ), None
    if name in given:
        return given[name], None
    return _MISSING, None


def _read_secret_file(key: str, given: Any, environ: Mapping[str, str]) -> str:
    """Read a secret from a file; relative paths look in systemd's $CREDENTIALS_DIRECTORY first."""
    if not isinstance(given, str) or not given:
        raise ConfigError(f"{key}: must be a file path")
    path = Path(given).expanduser()
    creds = environ.get("CREDENTIALS_DIRECTORY")
    if not path.is_absolute() and creds and (Path(creds) / path).is_file():
        path = Path(creds) / path
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def _check_unknown_env(
    section: str,
    fields: Mapping[str, dataclasses.Field[Any]],
    file_keys: Mapping[str, str],
    environ: Mapping[str, str],
) -> None:
    prefix = f"{ENV_PREFIX}{section}_".upper()
    known = {f"{prefix}{n}".upper() for n in [*fields, *file_keys]}
    for var in environ:
        if var.startswith(prefix) and var not in known and var not in _META_ENV:
            raise ConfigError(f"{var}: unknown setting{_did_you_mean(var, sorted(known))}")


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(key: str, raw: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    """Turn a YAML or environment value into the declared type, or raise ConfigError."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    if raw is None or (optional and isinstance(raw, str) and raw.strip() == ""):
        if optional:
            return None
        raise ConfigError(f"{key}: must not be empty")
    value = _coerce_plain(key, raw, hint, meta)
    for bound, op, word in (
        ("minimum", float.__lt__, "at least"),
        ("maximum", float.__gt__, "at most"),
    ):
        limit = meta.get(bound)
        if limit is not None and isinstance(value, (int, float)) and op(float(value), float(limit)):
            raise ConfigError(f"{key}: must be {word} {limit:g}, got {value!r}")
    return value


def _coerce_plain(key: str, raw: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        text = str(raw).strip()
        for choice in choices:
            if text.lower() == str(choice).lower():
                return choice
        raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))}, got {raw!r}")
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{key}: must be true or false, got {raw!r}")
    if hint is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{key}: must be a whole number, got {raw!r}")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str) and re.fullmatch(r"\s*[-+]?\d+\s*", raw):
            return int(raw)
        raise ConfigError(f"{key}: must be a whole number, got {raw!r}")
    if hint is float:
        if isinstance(raw, bool):
            raise ConfigError(f"{key}: must be a number, got {raw!r}")
        if isinstance(raw, (int, float)):
            return float(raw)
        if isinstance(raw, str):
            if meta.get("duration"):
                match = _DURATION.match(raw)
                if match:
                    return float(match.group(1)) * _DURATION_FACTORS[match.group(2)]
                raise ConfigError(
                    f"{key}: must be a duration in seconds or like 90s, 5m, 2h, got {raw!r}"
                )
            try:
                return float(raw)
            except ValueError:
                pass
        raise ConfigError(f"{key}: must be a number, got {raw!r}")
    if hint is str:
        if isinstance(raw, (dict, list)):
            raise ConfigError(f"{key}: must be a single value, got a {type(raw).__name__}")
        return str(raw)
    if typing.get_origin(hint) is list:
        if isinstance(raw, str):
            raw = [p.strip() for p in raw.split(",") if p.strip()]
        if not isinstance(raw, list):
            raise ConfigError(f"{key}: must be a list, got {raw!r}")
        (item,) = typing.get_args(hint)
        return [_coerce_plain(f"{key}[{i}]", v, item, meta) for i, v in enumerate(raw)]
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # a bug in a declaration


# --------------------------------------------------------------------------- showing


def redacted(config: Config) -> dict[str, dict[str, Any]]:
    """The effective settings with every secret replaced by ``***`` (or empty when unset)."""
    out: dict[str, dict[str, Any]] = {}
    for name in _sections():
        section = getattr(config, name)
        values: dict[str, Any] = {}
        for fld in dataclasses.fields(section):
            value = getattr(section, fld.name)
            if fld.metadata.get("secret") and value:
                value = _redact_url(value) if fld.name == "url" else "***"
            values[fld.name] = value
        out[name] = values
    return out


def _redact_url(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _default_of(fld: dataclasses.Field[Any]) -> Any:
    if fld.default is not dataclasses.MISSING:
        return fld.default
    factory: Any = fld.default_factory
    return factory()


def example_yaml() -> str:
    """The annotated example configuration (what ``config.example.yaml`` holds)."""
    lines = [
        "# Grill Stats Bridge configuration. Every key is shown with its default.",
        "# Search order: --config, $GRILLSTATS_CONFIG, ./config.yaml,",
        "# /etc/grillstats-bridge/config.yaml; without any file the defaults apply.",
        "# Every key can be overridden by the environment as GRILLSTATS_<SECTION>_<KEY>,",
        "# e.g. GRILLSTATS_DATABASE_URL. A secret can be read from a file instead: <key>_file",
        "# (relative paths look in systemd's $CREDENTIALS_DIRECTORY first).",
        "# Durations are seconds, or a number with s, m, h or d (90s, 5m, 2h).",
        "# Generated by 'grillstats-bridge config example'.",
    ]
    for name, cls in _sections().items():
        lines += ["", f"# {(cls.__doc__ or name).strip()}", f"{name}:"]
        for fld in dataclasses.fields(cls):
            meta = fld.metadata
            default = _default_of(fld)
            lines.append(f"  # {meta.get('help', '')}")
            for alias in meta.get("env_aliases", ()):
                lines.append(f"  # (environment: also {alias})")
            dumped = yaml.safe_dump({fld.name: default}, default_flow_style=True, width=1000)
            lines.append("  " + dumped.strip().removeprefix("{").removesuffix("}"))
            if meta.get("file_variant"):
                lines.append(f"  # {fld.name}_file: /path/to/file   (read the value from a file)")
    return "\n".join(lines) + "\n"
