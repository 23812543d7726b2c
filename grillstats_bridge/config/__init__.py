"""Configuration: one YAML file plus environment overrides -> one frozen, validated object.

``sections`` declares every setting once (a field of a section dataclass with its
default and help text); ``loader`` reads the file, the environment and the
``*_file`` secrets into a :class:`Config`; ``example`` renders
``config.example.yaml`` from the same declarations. Import from here.
"""

from grillstats_bridge.config.example import example_yaml
from grillstats_bridge.config.loader import (
    find_config_file,
    load_config,
    redact_url,
    redacted,
    split_reload,
)
from grillstats_bridge.config.sections import (
    CONFIG_ENV,
    ENV_PREFIX,
    SYSTEM_CONFIG,
    AlertsConfig,
    Config,
    ConfigError,
    ConfigSection,
    CookConfig,
    DatabaseConfig,
    HttpConfig,
    LoggingConfig,
    MqttConfig,
    PollingConfig,
    SecurityConfig,
    SessionsConfig,
    StorageConfig,
    ThermoworksConfig,
    setting,
)

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "SYSTEM_CONFIG",
    "AlertsConfig",
    "Config",
    "ConfigError",
    "ConfigSection",
    "CookConfig",
    "DatabaseConfig",
    "HttpConfig",
    "LoggingConfig",
    "MqttConfig",
    "PollingConfig",
    "SecurityConfig",
    "SessionsConfig",
    "StorageConfig",
    "ThermoworksConfig",
    "example_yaml",
    "find_config_file",
    "load_config",
    "redact_url",
    "redacted",
    "setting",
    "split_reload",
]
