"""One validated Settings object, read once at start and passed down.

Every value comes from the environment (or a `.env` file); names are the upper-case field names,
e.g. DATABASE_URL, REDIS_URL, TELEGRAM_BOT_TOKEN. The embedded default needs none of them: a
SQLite file under ./var/, in-process state, the example community, no channel credentials.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR_DIR = Path("var")
EXAMPLE_REGISTRY = Path("config/example-community.yaml")
PLACEHOLDERS = {"", "changeme", "change-me", "secret", "123456:TEST"}


def _local_secret() -> str:
    """A secret kept under ./var/ so signed links survive restarts of the embedded default."""
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value)
    return value


class Settings(BaseSettings):
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
    clarify_below: float = Field(default=0.5, ge=0, le=1)
    max_message_chars: int = Field(default=2000, ge=10)

    # Outbox sender
    send_batch: int = Field(default=50, ge=1)
    send_max_attempts: int = Field(default=8, ge=1)
    send_idle_seconds: float = Field(default=0.5, gt=0)

    # Telegram
    telegram_bot_token: str | None = None
    telegram_bot_username: str = "griddesk_bot"
    telegram_api_base: str | None = None
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_per_chat_per_second: float = Field(default=1.0, gt=0)
    telegram_global_per_second: float = Field(default=30.0, gt=0)

    # WeChat Official Account
    wechat_token: str | None = None
    wechat_appid: str | None = None
    wechat_secret: str | None = None
    wechat_encoding_aes_key: str | None = None
    wechat_previous_encoding_aes_key: str | None = None
    wechat_api_base: str | None = None
    wechat_template_notice: str | None = None

    @model_validator(mode="after")
    def _fill_and_check(self) -> Settings:
        if not self.secret_key:
            if self.environment == "production":
                raise ValueError("SECRET_KEY must be set in production")
            self.secret_key = _local_secret()
        if self.environment == "production":
            unsafe = [
                name
                for name in ("secret_key", "telegram_webhook_secret", "wechat_token")
                if getattr(self, name) is not None and getattr(self, name).strip() in PLACEHOLDERS
            ]
            if self.telegram_webhook_url and not self.telegram_webhook_secret:
                unsafe.append("telegram_webhook_secret")
            if unsafe:
                raise ValueError(
                    "unsafe values in production: " + ", ".join(n.upper() for n in unsafe)
                )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
