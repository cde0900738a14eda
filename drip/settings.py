"""Runtime settings from the environment, with their defaults, in one place."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(Exception):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    config_path: Path
    database_url: str
    smtp_url: str | None
    outbox_dir: Path | None
    secret_key: str | None = field(repr=False)
    # keys that signed links in emails already sent; they still verify, never sign
    old_secret_keys: tuple[str, ...] = field(default=(), repr=False)

    # DKIM signing (drip/dkim.py): an RSA key, optionally an ed25519 key as well
    dkim_key: Path | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_ed25519_key: Path | None = None
    dkim_ed25519_selector: str | None = None
    # bounce webhooks (drip/web/hooks.py)
    hook_secret: str | None = None
    mailgun_signing_key: str | None = None

    def __repr__(self) -> str:
        """Secrets masked: settings end up in logs and tracebacks."""
        return (
            f"Settings(config_path={str(self.config_path)!r}, "
            f"database_url={mask_url(self.database_url)!r}, "
            f"smtp_url={mask_url(self.smtp_url)!r}, outbox_dir={self.outbox_dir!r}, "
            f"secret_key={'***' if self.secret_key else None}, "
            f"old_secret_keys=<{len(self.old_secret_keys)} masked>)"
        )

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
            old_secret_keys=tuple(env.get("DRIP_OLD_SECRET_KEYS", "").replace(",", " ").split()),
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


def mask_url(url: str | None) -> str | None:
    """The URL with any password replaced by ***: smtp://user:***@host:587."""
    if url is None:
        return None
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url, flags=re.I)
