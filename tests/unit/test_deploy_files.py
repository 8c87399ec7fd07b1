"""deploy/: the systemd units start commands griddesk has, nginx reaches the sockets they listen
on with the app's own body caps and keeps secrets out of its access log, and the environment
file names every setting there is, and nothing else."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.app import MAX_BODY_BYTES
from bot.channels.wechat import MAX_PUSH_BYTES
from bot.cli import build_parser
from bot.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
NGINX = (DEPLOY / "nginx" / "griddesk.conf").read_text(encoding="utf-8")
EXECUTABLE = "/opt/griddesk/.venv/bin/griddesk"
# Read by uvicorn itself, not by Settings.
OUTSIDE_SETTINGS = {"FORWARDED_ALLOW_IPS"}


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read(path, encoding="utf-8")
    return parser


def command_of(path: Path, instance: str = "1") -> list[str]:
    words = shlex.split(unit(path)["Service"]["ExecStart"].replace("%i", instance))
    assert words[0] == EXECUTABLE, words
    return words[1:]


def sizes(text: str) -> int:
    number, unit_ = re.fullmatch(r"(\d+)([kKmM]?)", text).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit_.lower()]


def test_there_is_a_serve_template_and_a_worker() -> None:
    assert [p.name for p in UNITS] == ["griddesk-serve@.service", "griddesk-worker.service"]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_unit_starts_a_griddesk_command_with_options_it_has(path: Path) -> None:
    args = build_parser().parse_args(command_of(path))  # an unknown command or option exits here
    assert callable(args.func)
    assert args.command in ("serve", "worker")
    service = unit(path)["Service"]
    assert service["EnvironmentFile"] == "/etc/griddesk/griddesk.env"
    assert service["User"] == "griddesk" and service["Restart"] == "on-failure"


def test_serve_instances_listen_where_nginx_sends_requests() -> None:
    serve = DEPLOY / "systemd" / "griddesk-serve@.service"
    runtime = unit(serve)["Service"]["RuntimeDirectory"]
    sockets = set()
    for instance in ("1", "2", "3"):
        path = build_parser().parse_args(command_of(serve, instance)).uds
        # systemd makes each instance's directory for its socket, and removes it when it stops.
        assert path.startswith(f"/run/{runtime.replace('%i', instance)}/"), path
        sockets.add(path)
    upstream = re.search(r"upstream griddesk \{(.*?)\}", NGINX, re.DOTALL).group(1)  # type: ignore[union-attr]
    assert set(re.findall(r"server unix:([^\s;]+)", upstream)) == sockets


def test_nginx_refuses_bodies_the_app_would_refuse_and_no_sooner() -> None:
    server_wide = re.search(r"^    client_max_body_size\s+(\S+);", NGINX, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert sizes(server_wide) == MAX_BODY_BYTES
    for push in ("/wechat", "/wecom"):  # WeChat's and WeCom's signed XML pushes
        block = re.search(rf"location = {push} \{{(.*?)\}}", NGINX, re.DOTALL).group(1)  # type: ignore[union-attr]
        assert sizes(re.search(r"client_max_body_size\s+(\S+);", block).group(1)) == MAX_PUSH_BYTES  # type: ignore[union-attr]


def test_nginx_logs_no_query_string_token_or_referer_and_passes_the_request_id() -> None:
    log_format = re.search(r"log_format griddesk (.*?);", NGINX, re.DOTALL).group(1)  # type: ignore[union-attr]
    for leaky in ("$request_uri", "$request ", "$args", "$query_string", "$http_referer", "$uri "):
        assert leaky not in log_format + " ", leaky
    assert "$griddesk_logged_uri" in log_format and "$request_id" in log_format
    assert "proxy_set_header X-Request-ID $request_id;" in NGINX
    assert "return 301 https://$host$request_uri;" in NGINX
    for access_log in re.findall(r"access_log\s+(.*?);", NGINX):
        assert access_log.endswith(" griddesk"), access_log


def test_the_environment_file_names_every_setting_and_only_settings() -> None:
    text = (DEPLOY / "env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    assert named - OUTSIDE_SETTINGS == {name.upper() for name in Settings.model_fields}
    assigned = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, re.MULTILINE))
    assert assigned["ENVIRONMENT"] == "production" and assigned["LOG_FORMAT"] == "json"
    for secret in ("SECRET_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "WECHAT_SECRET"):
        assert assigned[secret].startswith("<"), secret  # a placeholder, never a real value


def test_production_refuses_the_environment_file_until_its_placeholders_are_filled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DEPLOY / "env.example").read_text(encoding="utf-8")
    assigned = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, re.MULTILINE))
    for name, value in assigned.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="unsafe values in production: .*SECRET_KEY"):
        Settings(_env_file=None)
    filled = {name: value.replace("<", "").replace(">", "") for name, value in assigned.items()
              if "<" in value}
    for name, value in filled.items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None).environment == "production"
