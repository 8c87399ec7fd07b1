"""One validated Settings object, read once at start and passed down.

Every value comes from the environment (or a `.env` file); names are the upper-case field names,
e.g. DATABASE_URL, REDIS_URL, TELEGRAM_BOT_TOKEN. The embedded default needs none of them: a
SQLite file under ./var/, in-process state, the example community, no channel credentials.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR_DIR = Path("var")
# The example community ships with the code, so it is found from any working directory.
EXAMPLE_REGISTRY = Path(__file__).resolve().parent.parent / "config" / "example-community.yaml"
ESCALATION_STEPS = ("b", "duty_leader", "director")
PLACEHOLDERS = {"", "changeme", "change-me", "secret", "123456:TEST"}
TEMPLATE_PLACEHOLDER = re.compile(r"<[^<>]+>")


def _local_secret() -> str:
    """A secret kept under ./var/ so signed links survive restarts of the embedded default."""
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value)
    return value


class LogSettings(BaseSettings):
    """What logging needs, readable before (and without) the rest: no secret is made for it."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # `json`: one JSON object per line (time, level, logger, message, case, channel, request_id).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value  # LOG_LEVEL=debug works too


class Settings(LogSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Literal["development", "production"] = "development"
    database_url: str = f"sqlite:///{VAR_DIR / 'griddesk.db'}"
    redis_url: str | None = None
    secret_key: str = Field(default="")
    public_url: str = "http://127.0.0.1:8000"
    registry_file: Path | None = None
    demo: bool | None = None

    # NLU
    nlu_backend: Literal["embedded", "rasa"] = "embedded"
    nlu_model_dir: Path | None = None
    rasa_url: str = "http://127.0.0.1:5005"
    # Seconds to wait for the Rasa server before the embedded model reads the message instead.
    rasa_timeout: float = Field(default=2.0, gt=0, le=30)
    # Rasa's `--auth-token`, sent as ?token=… on every parse.
    rasa_token: str | None = None
    clarify_below: float = Field(default=0.6, ge=0, le=1)
    max_message_chars: int = Field(default=2000, ge=10)

    # Outbox sender
    send_batch: int = Field(default=50, ge=1)
    send_max_attempts: int = Field(default=8, ge=1)
    send_idle_seconds: float = Field(default=0.5, gt=0)
    # A claimed notice is invisible to other senders for this long; a sender that dies
    # mid-send leaves it to be retried after the lease.
    send_lease_seconds: float = Field(default=60.0, gt=0)

    # Deadline watch (handlers/watch/escalation.py): reminders, escalation, follow-up, digests
    watch_tick_seconds: float = Field(default=30.0, gt=0)
    watch_batch: int = Field(default=500, ge=1)
    # Remind when this share of the window is left (0.25: with a quarter of the time left).
    watch_reminder_lead: float = Field(default=0.25, gt=0, lt=1)
    # 回访: hours after resolution without a rating; then hours after the follow-up to close.
    watch_follow_up_hours: float = Field(default=48.0, gt=0)
    watch_close_unrated_hours: float = Field(default=72.0, gt=0)
    # Local time of the morning digest on working days.
    watch_digest_time: dt.time = dt.time(8, 30)
    # Escalation steps when a case is not acknowledged in time: b (the post's B holder),
    # duty_leader (today's 带班领导), director. Urgent cases climb on minutes, at any hour.
    watch_chain: str = "b,director"
    watch_urgent_chain: str = "b,duty_leader,director"
    # Web chat lines older than this are deleted (storage/retention.py); cases keep their history.
    chat_history_days: int = Field(default=365, ge=1)

    # Telegram
    telegram_bot_token: str | None = None
    telegram_bot_username: str = "griddesk_bot"
    telegram_api_base: str | None = None
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_per_chat_per_second: float = Field(default=1.0, gt=0)
    telegram_global_per_second: float = Field(default=30.0, gt=0)
    # Polling mode (a token and no webhook URL): whether this process runs the one getUpdates
    # loop. Set TELEGRAM_POLL=false on every other process (e.g. `griddesk worker`).
    telegram_poll: bool = True
    # getUpdates long-poll timeout in seconds.
    telegram_poll_timeout: int = Field(default=25, ge=1, le=50)
    # How long a `griddesk staff invite` link stays valid.
    telegram_invite_ttl_hours: float = Field(default=72.0, gt=0)

    # Printed grid signs (`griddesk qr`): a TTF/OTF/TTC font with CJK glyphs. Without one the
    # sign shows codes and ASCII only.
    grid_sign_font: Path | None = None

    # WeChat Official Account
    wechat_token: str | None = None
    wechat_appid: str | None = None
    wechat_secret: str | None = None
    wechat_encoding_aes_key: str | None = None
    wechat_previous_encoding_aes_key: str | None = None
    wechat_api_base: str | None = None
    wechat_template_notice: str | None = None
    # The template's data slots for: heading, case number, details, remark (see README, WeChat).
    wechat_template_fields: str = "first,keyword1,keyword2,remark"
    # WeChat waits 5 s for a passive reply; past this budget the answer goes out as a
    # customer-service message instead.
    wechat_reply_budget_seconds: float = Field(default=4.0, gt=0, le=4.5)
    # How long a notice waits for the resident's next message when no window or template is left.
    wechat_hold_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    # A push whose timestamp is further than this from now gets 403; a (timestamp, nonce) pair
    # seen before inside the window gets 403 too (replay).
    wechat_freshness_seconds: int = Field(default=300, ge=30, le=3600)
    # With an EncodingAESKey set only safe (and compatible) mode is accepted, unless this is true.
    wechat_allow_plain: bool = False

    # WeCom (企业微信) self-built app for staff (see README, WeCom). The callback's freshness window
    # is WECHAT_FRESHNESS_SECONDS, shared with the Official Account.
    wecom_corp_id: str | None = None
    wecom_agent_id: int | None = None
    wecom_secret: str | None = None
    wecom_token: str | None = None
    wecom_encoding_aes_key: str | None = None
    # Only to point at another server (a test double, a proxy with the trusted IP).
    wecom_api_base: str = "https://qyapi.weixin.qq.com/cgi-bin/"

    # /metrics (bot/web/metrics.py): when set, a scrape must send `Authorization: Bearer <token>`;
    # unset, /metrics is open (restrict it by network) and shows nothing personal.
    metrics_token: str | None = None

    @field_validator("watch_chain", "watch_urgent_chain")
    @classmethod
    def _known_steps(cls, value: str) -> str:
        steps = [s.strip() for s in value.split(",") if s.strip()]
        unknown = [s for s in steps if s not in ESCALATION_STEPS]
        if not steps or unknown:
            raise ValueError(f"escalation steps must be among {', '.join(ESCALATION_STEPS)}; got {value!r}")
        return ",".join(steps)

    @model_validator(mode="after")
    def _fill_and_check(self) -> Settings:
        if not self.secret_key:
            if self.environment == "production":
                raise ValueError("SECRET_KEY must be set in production")
            self.secret_key = _local_secret()
        if self.environment == "production" and self.demo:
            raise ValueError("DEMO=true is refused in production: the persona picker signs anyone in")
        if self.environment == "production":
            unsafe = [
                name
                for name in ("secret_key", "telegram_bot_token", "telegram_webhook_secret", "wechat_token",
                             "wecom_token", "metrics_token")
                if getattr(self, name) is not None and getattr(self, name).strip() in PLACEHOLDERS
            ]
            if self.telegram_webhook_url and not self.telegram_webhook_secret:
                unsafe.append("telegram_webhook_secret")
            # deploy/env.example's `<…>` placeholders, left unfilled in any setting.
            unsafe += [name for name, value in self if isinstance(value, str)
                       and TEMPLATE_PLACEHOLDER.search(value) and name not in unsafe]
            if unsafe:
                raise ValueError(
                    "unsafe values in production: " + ", ".join(n.upper() for n in unsafe)
                )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
