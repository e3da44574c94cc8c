"""Configuration: the shipped files load, every mistake names its key, secrets stay hidden."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from hub.settings import ConfigError, Settings, apply_env_overrides, load_settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
SECRET = "Zq9-very-secret-token-77"

MINIMAL = """
[hub]
public_url = "https://hub.kemnaker.go.id/"

[channels.whatsapp.accounts.wa1]
number = "+628119521150"
account_sid = "AC11111111111111111111111111111111"
auth_token = "file-token-0123456789"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hub.toml"
    p.write_text(text, encoding="utf-8")
    return p


def config_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={} if environ is None else environ)
    return str(info.value)


@pytest.mark.parametrize("name", ["demo.toml", "hub.example.toml"])
def test_shipped_config_files_load(name: str) -> None:
    """config/demo.toml and config/hub.example.toml (placeholders included) validate."""
    s = load_settings(CONFIG / name, environ={})
    assert isinstance(s, Settings)
    assert set(s.channels.whatsapp.accounts) == {"wa1", "wa2", "cloud"}
    assert s.channels.whatsapp.accounts["cloud"].provider == "cloud"
    assert set(s.channels.instagram.accounts) == {"ppid"}
    assert "follow_up" in s.channels.whatsapp.accounts["wa1"].templates
    assert not s.hub.public_url.endswith("/")


def test_example_documents_its_defaults() -> None:
    """hub.example.toml's values equal the code's defaults where it claims to show them."""
    s = load_settings(CONFIG / "hub.example.toml", environ={})
    minimal = Settings.model_validate({"hub": {"public_url": "https://hub.kemnaker.go.id"}})
    for section in ("redis", "dispatcher", "outbox", "ack", "demo", "sla", "alerts"):
        assert getattr(s, section) == getattr(minimal, section), section
    assert s.hub.model_dump() == minimal.hub.model_dump()


def test_minimal_config_and_trailing_slash(tmp_path: Path) -> None:
    """public_url plus one account is enough; a trailing slash on public_url is dropped."""
    s = load_settings(write(tmp_path, MINIMAL), environ={})
    assert s.hub.public_url == "https://hub.kemnaker.go.id"
    assert s.hub.max_body_bytes == 1_048_576


def test_missing_public_url_names_the_key(tmp_path: Path) -> None:
    """A config without hub.public_url is refused with a message naming hub.public_url."""
    msg = config_error(
        write(tmp_path, MINIMAL.replace('public_url = "https://hub.kemnaker.go.id/"', ""))
    )
    assert "hub.public_url" in msg
    assert "required" in msg.lower()


def test_public_url_needs_a_scheme(tmp_path: Path) -> None:
    """public_url without http(s):// is refused, naming the key."""
    msg = config_error(write(tmp_path, MINIMAL.replace("https://", "")))
    assert "hub.public_url" in msg
    assert "http://" in msg


def test_misspelled_key_is_named_as_unknown(tmp_path: Path) -> None:
    """[redis] urll is refused as an unknown key, named redis.urll."""
    msg = config_error(write(tmp_path, MINIMAL + '\n[redis]\nurll = "redis://x"\n'))
    assert "redis.urll" in msg
    assert "unknown key" in msg


def test_misspelled_section_is_named(tmp_path: Path) -> None:
    """A whole unknown section ([dispatch] for [dispatcher]) is named too."""
    msg = config_error(write(tmp_path, MINIMAL + "\n[dispatch]\nbatch_size = 5\n"))
    assert "dispatch: unknown key" in msg


def test_bad_type_names_the_key(tmp_path: Path) -> None:
    """listen_port = "x" is refused with a message naming hub.listen_port."""
    text = MINIMAL.replace("[hub]\n", '[hub]\nlisten_port = "x"\n')
    msg = config_error(write(tmp_path, text))
    assert "hub.listen_port" in msg
    assert "integer" in msg


def test_every_bad_key_is_named_at_once(tmp_path: Path) -> None:
    """Several mistakes are all reported in one message, one line each."""
    text = MINIMAL.replace("[hub]\n", '[hub]\nlisten_port = 70000\nlog_level = "loud"\n')
    text += '\n[outbox]\nsend_timeout_s = 0\n\n[redis]\nurll = ""\n'
    msg = config_error(write(tmp_path, text))
    for key in ("hub.listen_port", "hub.log_level", "outbox.send_timeout_s", "redis.urll"):
        assert key in msg, key


def test_bad_account_values_name_the_nested_key(tmp_path: Path) -> None:
    """A bad account_sid and a bad template ContentSid are named by their full path."""
    text = MINIMAL.replace('"AC1111', '"XX1111')
    text += '\n[channels.whatsapp.accounts.wa1.templates.follow_up]\ncontent_sid = "HX1"\n'
    msg = config_error(write(tmp_path, text))
    assert "channels.whatsapp.accounts.wa1.account_sid" in msg
    assert "channels.whatsapp.accounts.wa1.templates.follow_up.content_sid" in msg


def test_not_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    """An unreadable file is a ConfigError naming the file, not a traceback."""
    assert "not valid TOML" in config_error(write(tmp_path, "[hub\n"))
    assert "not found" in config_error(tmp_path / "nope.toml")


def test_env_overrides_take_effect(tmp_path: Path) -> None:
    """HUB__REDIS__URL and the nested account token override the file; numbers are parsed."""
    env = {
        "HUB__REDIS__URL": "redis://10.0.0.5:6379/0",
        "HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA1__AUTH_TOKEN": SECRET,
        "HUB__HUB__LISTEN_PORT": "9090",
        "HUB__ACK__ENABLED": "false",
        "HUB__API__TOKENS": '[{name="crm", token="crm-token-0123456789"}]',
        "PATH": "/usr/bin",  # not ours: ignored
    }
    s = load_settings(write(tmp_path, MINIMAL), environ=env)
    assert s.redis.url == "redis://10.0.0.5:6379/0"
    assert s.channels.whatsapp.accounts["wa1"].auth_token.get_secret_value() == SECRET
    assert s.hub.listen_port == 9090
    assert s.ack.enabled is False
    assert s.api.tokens[0].name == "crm"


def test_env_overrides_read_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an explicit environ, load_settings reads os.environ."""
    monkeypatch.setenv("HUB__REDIS__URL", "redis://10.0.0.6:6379/1")
    assert load_settings(write(tmp_path, MINIMAL)).redis.url == "redis://10.0.0.6:6379/1"


def test_env_override_can_create_an_account(tmp_path: Path) -> None:
    """An account can come entirely from the environment (tables are created on the way)."""
    env = {
        "HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA9__ACCOUNT_SID": "AC" + "9" * 32,
        "HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA9__AUTH_TOKEN": SECRET,
        "HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA9__NUMBER": '"+628119521159"',
    }
    s = load_settings(write(tmp_path, MINIMAL), environ=env)
    assert s.channels.whatsapp.accounts["wa9"].number == "+628119521159"


def test_env_override_of_a_phone_number_stays_a_string(tmp_path: Path) -> None:
    """HUB__...__NUMBER=+628119521199 (unquoted, as operators write it) sets the number."""
    env = {"HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA1__NUMBER": "+628119521199"}
    s = load_settings(write(tmp_path, MINIMAL), environ=env)
    assert s.channels.whatsapp.accounts["wa1"].number == "+628119521199"


def test_env_override_misspelling_is_named(tmp_path: Path) -> None:
    """A misspelled environment override is an unknown key like one in the file."""
    msg = config_error(write(tmp_path, MINIMAL), {"HUB__REDIS__URLL": "redis://x"})
    assert "redis.urll" in msg
    assert "unknown key" in msg


def test_env_override_inside_a_value_is_refused(tmp_path: Path) -> None:
    """Overriding below a non-table value is a ConfigError naming the path."""
    with pytest.raises(ConfigError, match=r"hub\.public_url\.x"):
        apply_env_overrides({"hub": {"public_url": "https://a"}}, {"HUB__HUB__PUBLIC_URL__X": "1"})


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    """Auth and API tokens appear in neither repr, str nor JSON dump of the settings."""
    env = {
        "HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA1__AUTH_TOKEN": SECRET,
        "HUB__API__TOKENS": f'[{{name="crm", token="{SECRET}"}}]',
    }
    s = load_settings(write(tmp_path, MINIMAL), environ=env)
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.channels), repr(s.api.tokens)):
        assert SECRET not in text
        assert "file-token-0123456789" not in text


@pytest.mark.parametrize(
    ("env", "key"),
    [
        # too short for auth_token (min 8)
        ({"HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA1__AUTH_TOKEN": "s3cr3t!"}, "auth_token"),
        # too short for an API token (min 16)
        ({"HUB__API__TOKENS": '[{name="crm", token="s3cr3t!s3cr3t"}]'}, "api.tokens.0.token"),
        # wrong type (a TOML table)
        (
            {"HUB__CHANNELS__WHATSAPP__ACCOUNTS__WA1__AUTH_TOKEN": '{v="s3cr3t!-long"}'},
            "auth_token",
        ),
    ],
)
def test_config_error_never_echoes_a_secret(tmp_path: Path, env: dict[str, str], key: str) -> None:
    """An invalid secret is named by key, but its value is in neither message nor traceback."""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, MINIMAL), environ=env)
    msg = str(info.value)
    assert key in msg
    shown = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert "s3cr3t" not in shown
    assert info.value.__cause__ is None


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB__")}
    return subprocess.run(
        [sys.executable, "-m", "hub", "check-config", "--config", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_config_cli_rejects_bad_file(tmp_path: Path) -> None:
    """`python -m hub check-config` on a bad file exits 2 naming the key on stderr only."""
    text = MINIMAL.replace("file-token-0123456789", "s3cr3t!") + '\n[redis]\nurll = "x"\n'
    proc = _check_config(write(tmp_path, text))
    assert proc.returncode == 2, proc.stderr
    assert "redis.urll" in proc.stderr
    assert "unknown key" in proc.stderr
    assert "auth_token" in proc.stderr
    assert "s3cr3t" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_check_config_cli_accepts_good_file() -> None:
    """`python -m hub check-config` on config/demo.toml exits 0 and says ok."""
    proc = _check_config(CONFIG / "demo.toml")
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout
