"""The encryption key as a systemd credential, and never a silently new key.

``security.encryption_key_file`` (or ``GRILLSTATS_SECURITY_ENCRYPTION_KEY_FILE``)
reads the key from a file, a relative ``key_file`` is looked up in
``$CREDENTIALS_DIRECTORY`` first, and a key file that is missing while linked
accounts hold encrypted secrets is an error (one line, non-zero exit), on SQLite
and PostgreSQL, never a new key that could not read them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from grillstats_bridge.cli import main
from grillstats_bridge.config import Config, SecurityConfig, load_config
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import ThermoWorksCredentials
from grillstats_bridge.store.secrets import SecretBox, SecretError, generate_key
from grillstats_bridge.store.users import add_user


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """systemd's $CREDENTIALS_DIRECTORY with a key in it; the working directory elsewhere."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    key = generate_key()
    (creds / "encryption-key").write_text(key + "\n")
    work = tmp_path / "state"
    work.mkdir()
    monkeypatch.chdir(work)
    return creds, key


def test_encryption_key_file_reads_a_credential(
    tmp_path: Path, credentials: tuple[Path, str]
) -> None:
    creds, key = credentials
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"security": {"encryption_key_file": "encryption-key"}}))
    environ = {"CREDENTIALS_DIRECTORY": str(creds)}
    for config in (
        load_config(path, environ=environ),
        load_config(
            None, environ={**environ, "GRILLSTATS_SECURITY_ENCRYPTION_KEY_FILE": "encryption-key"}
        ),
    ):
        assert config.security.encryption_key == key
        token = SecretBox.from_config(config.security).encrypt("refresh-token")
        assert Fernet(key.encode()).decrypt(token.encode()) == b"refresh-token"
    assert not (Path.cwd() / "grillstats.key").exists()  # no key of its own made


def test_a_relative_key_file_is_looked_up_in_the_credentials_directory(
    credentials: tuple[Path, str],
) -> None:
    creds, key = credentials
    config = SecurityConfig(key_file="encryption-key")
    box = SecretBox.from_config(config, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert Fernet(key.encode()).decrypt(box.encrypt("secret").encode()) == b"secret"
    assert not (Path.cwd() / "encryption-key").exists()
    # without the credentials directory: the working directory, as before
    SecretBox.from_config(config, environ={})
    assert (Path.cwd() / "encryption-key").read_text().strip() != key


def test_a_missing_key_with_stored_tokens_is_an_error(
    database: Database, config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "lost.key"
    security = SecurityConfig(key_file=str(key_file), bcrypt_rounds=4)
    # nothing stored yet: a first key is made, as before
    SecretBox.from_config(security, database=database)
    assert key_file.exists()
    box = SecretBox.from_config(security, database=database)
    with database.transaction() as db:
        user = add_user(db, "cook@example.com", "correct horse battery", security)
        db.add(ThermoWorksCredentials(user_id=user.id, refresh_token=box.encrypt("token")))
    key_file.unlink()  # the key is lost (a new working directory, a missing credential)
    with pytest.raises(SecretError, match="1 linked account"):
        SecretBox.from_config(security, database=database)
    assert not key_file.exists()
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {"database": {"url": config.database.url}, "security": {"key_file": str(key_file)}}
        )
    )
    assert main(["--config", str(path), "devices", "sync"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"{key_file} does not exist, but 1 linked account(s)" in err
    assert "Traceback" not in err and not key_file.exists()
