"""``config``: show the effective configuration, print the annotated example, make a key."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from grillstats_bridge.cli.common import Context, add_command, add_group
from grillstats_bridge.config import example_yaml, redacted
from grillstats_bridge.store.secrets import generate_key


def register(sub: Any) -> None:
    config = add_group(sub, "config", "inspect the configuration")
    add_command(config, "show", _show, "print the effective configuration (secrets hidden)")
    add_command(
        config, "example", _example, "print the annotated example configuration with every key"
    )
    add_command(config, "genkey", _genkey, "print a new encryption key for security.encryption_key")


def _show(args: argparse.Namespace, ctx: Context) -> int:
    cfg = ctx.config
    print(f"# from {cfg.source or 'built-in defaults (no configuration file found)'}")
    sys.stdout.write(yaml.safe_dump(redacted(cfg), sort_keys=False))
    return 0


def _example(args: argparse.Namespace, ctx: Context) -> int:
    sys.stdout.write(example_yaml())
    return 0


def _genkey(args: argparse.Namespace, ctx: Context) -> int:
    print(generate_key())
    return 0
