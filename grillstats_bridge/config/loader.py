"""Reading the configuration: YAML file < ``GRILLSTATS_<SECTION>_<KEY>`` (and the seed's
``SQLALCHEMY_*`` names) < command-line options, ``*_file`` secrets, coercion and
validation into one frozen :class:`Config`; ``redacted`` and ``redact_url`` for showing it."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import yaml

from grillstats_bridge.config.sections import (
    _META_ENV,
    CONFIG_ENV,
    ENV_PREFIX,
    SYSTEM_CONFIG,
    Config,
    ConfigError,
    _sections,
)

LIVE_SECTIONS = ("logging", "polling")  # what a running bridge applies at a reload (SIGHUP)


def split_reload(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """A configuration read again: the one a running bridge goes on with (``old`` with
    ``new``'s live sections), the live sections that changed, and the sections that
    changed but need a restart (``source``, where it was read from, is neither)."""
    changed = [
        f.name
        for f in dataclasses.fields(new)
        if f.name != "source" and getattr(new, f.name) != getattr(old, f.name)
    ]
    merged = dataclasses.replace(old, **{name: getattr(new, name) for name in LIVE_SECTIONS})
    live = [name for name in changed if name in LIVE_SECTIONS]
    return merged, live, [name for name in changed if name not in LIVE_SECTIONS]


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
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden by the keys beside it
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the constructor below says so
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


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


def redacted(config: Config) -> dict[str, dict[str, Any]]:
    """The effective settings with every secret replaced by ``***`` (or empty when unset)."""
    out: dict[str, dict[str, Any]] = {}
    for name in _sections():
        section = getattr(config, name)
        values: dict[str, Any] = {}
        for fld in dataclasses.fields(section):
            value = getattr(section, fld.name)
            if fld.metadata.get("secret") and value:
                value = redact_url(value) if fld.name == "url" else "***"
            values[fld.name] = value
        out[name] = values
    return out


# The URL grammar SQLAlchemy's make_url reads (a password may hold "/" and "?"), with
# the user info, host and port as one authority: its user info ends at its last "@",
# so that a password holding an unescaped "@" is hidden whole.
_URL = re.compile(
    r"""(?P<scheme>[\w+]+://)
    (?P<authority>(?:[^:/]*(?::[^@]*)?@)?(?:\[[^/?]+\]|[^/:?]+)?(?::[^/?]*)?)
    (?P<path>/[^?]*)?
    (?:\?(?P<query>.*))?""",
    re.X | re.S,
)
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token", re.I)


def redact_url(url: str) -> str:
    """``url`` with its password hidden, in the user info (``@`` in it or not) and in any
    query parameter that holds one (``?password=``, ``sslpassword``...): the one function
    behind ``config show``, the start-up log, ``/health`` and every message."""
    match = _URL.fullmatch(url)
    if match is None:
        return "<unparseable URL>"
    authority = match["authority"]
    userinfo, at, hostport = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    shown = f"{match['scheme']}{user}{':***' if colon else ''}{at}{hostport}{match['path'] or ''}"
    if match["query"] is not None:
        parameters = []
        for parameter in match["query"].split("&"):
            key, equals, _ = parameter.partition("=")
            secret = equals and _SECRET_PARAMETER.search(unquote(key))
            parameters.append(f"{key}=***" if secret else parameter)
        shown += "?" + "&".join(parameters)
    return shown
