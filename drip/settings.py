"""Runtime settings from the environment, with their defaults, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class SettingsError(Exception):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    config_path: Path
    database_url: str
    smtp_url: str | None
    outbox_dir: Path | None
    secret_key: str | None
    # DKIM signing (drip/dkim.py): an RSA key, optionally an ed25519 key as well
    dkim_key: Path | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_ed25519_key: Path | None = None
    dkim_ed25519_selector: str | None = None
    # bounce webhooks (drip/web/hooks.py)
    hook_secret: str | None = None
    mailgun_signing_key: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        config_path = Path(env.get("DRIP_CONFIG", "campaigns.toml")).resolve()
        default_db = f"sqlite:///{config_path.parent / 'drip.db'}"
        outbox = env.get("DRIP_OUTBOX")
        return cls(
            config_path=config_path,
            database_url=env.get("DRIP_DATABASE_URL", default_db),
            smtp_url=env.get("DRIP_SMTP_URL") or None,
            outbox_dir=Path(outbox).resolve() if outbox else None,
            secret_key=env.get("DRIP_SECRET_KEY") or None,
            dkim_key=_path(env.get("DRIP_DKIM_KEY")),
            dkim_selector=env.get("DRIP_DKIM_SELECTOR") or None,
            dkim_domain=(env.get("DRIP_DKIM_DOMAIN") or "").strip().lower() or None,
            dkim_ed25519_key=_path(env.get("DRIP_DKIM_ED25519_KEY")),
            dkim_ed25519_selector=env.get("DRIP_DKIM_ED25519_SELECTOR") or None,
            hook_secret=env.get("DRIP_HOOK_SECRET") or None,
            mailgun_signing_key=env.get("DRIP_MAILGUN_SIGNING_KEY") or None,
        )

    def require_secret(self) -> str:
        if not self.secret_key:
            raise SettingsError(
                "DRIP_SECRET_KEY is not set. It signs the unsubscribe and preference links "
                "in every email. Generate one with:\n"
                "  python -c 'import secrets; print(secrets.token_urlsafe(32))'\n"
                "and keep it secret and stable (changing it breaks links already sent)."
            )
        if len(self.secret_key) < 16:
            raise SettingsError("DRIP_SECRET_KEY is too short: use at least 16 characters")
        return self.secret_key


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser().resolve() if value else None
