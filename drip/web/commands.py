"""CLI commands for the web side, registered on the main `drip` group.

serve (the web app), run (web app + scheduler), snippet (embed HTML for a clinic
site), subscribers purge-pending, and demo (sample patients, then the web app
and a local mail catcher; the demo's code lives in drip/demo/).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .. import dberrors, rights
from ..checks import check_config
from ..clock import parse_now
from ..config import ConfigError
from ..settings import SettingsError
from ..transport import TransportUnavailable, transport_from_settings
from .options import OptionsError, WebOptions
from .services import Services


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"drip: {message}", err=True)
    sys.exit(code)


def load_services(app: Any, proxy: int | None = None, check: bool = True) -> Services:
    """Services for the CLI's settings, or exit with what is wrong."""
    from .app import build_services

    try:
        options = WebOptions.from_env()
        if proxy is not None:
            options = replace(options, trusted_proxies=proxy)
        services = build_services(app.settings, options)
    except (ConfigError, SettingsError, OptionsError, RuntimeError) as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(dberrors.describe(exc, app.settings.database_url), dberrors.EXIT_DATABASE)
    if check:
        report = check_config(services.config)
        if report.problems:
            for problem in report.problems:
                click.echo(f"error: {problem}", err=True)
            _fail("templates have problems (see `drip check`); not starting")
    if not (app.settings.smtp_url or app.settings.outbox_dir):
        _fail("no mail transport: set DRIP_SMTP_URL (or DRIP_OUTBOX=folder for testing)")
    try:  # both set, or a malformed URL: say so now, not at the first email
        transport_from_settings(app.settings.smtp_url, app.settings.outbox_dir).close()
    except (TransportUnavailable, ValueError) as exc:
        _fail(str(exc))
    return services


host_option = click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 for every interface).",
)
port_option = click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
proxy_option = click.option(
    "--proxy",
    type=click.IntRange(0, 10),
    default=None,
    help="Trust X-Forwarded-For/Proto/Host from this many reverse proxies in front "
    "(default: DRIP_TRUSTED_PROXIES, else 0: trust none).",
)
threads_option = click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))


def _serve(
    services: Services, host: str, port: int, threads: int, scheduler: bool, every: float = 60
) -> None:
    from .app import create_app
    from .server import make_server, setup_logging, start_scheduler

    setup_logging()
    server = make_server(create_app(services=services), host, port, threads)
    # edits of campaigns.toml and templates are taken up once they pass the check
    services.watch(every=min(5.0, every))
    sched = start_scheduler(services, every, send=scheduler, watch_seconds=min(5.0, every))
    services.worker.start()  # queued emails leave from here, never from a request
    click.echo(
        f"drip: serving {services.config.clinic.name} on "
        f"http://{host}:{server.effective_port}/subscribe"
        + (" with the send scheduler" if scheduler else "")
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        sched.shutdown(wait=True)
        services.worker.stop()
        server.close()


@click.command()
@host_option
@port_option
@proxy_option
@threads_option
@click.pass_obj
def serve(app: Any, host: str, port: int, proxy: int | None, threads: int) -> None:
    """Serve the signup, confirmation, unsubscribe and preferences pages (waitress).

    Put it behind a reverse proxy that terminates HTTPS; see docs/web.md.
    Sending stays with cron's `drip send` (or use `drip run`).
    """
    _serve(load_services(app, proxy), host, port, threads, scheduler=False)


@click.command()
@host_option
@port_option
@proxy_option
@threads_option
@click.option(
    "--every",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds between sends.",
)
@click.pass_obj
def run(app: Any, host: str, port: int, proxy: int | None, threads: int, every: float) -> None:
    """The web app plus a scheduler running `drip send` every minute: one process, no cron.

    Safe alongside a cron `drip send`: both take the same send lock, so nothing
    is ever sent twice. Edits of campaigns.toml and templates are taken up
    before the next send once they pass the check.
    """
    _serve(load_services(app, proxy), host, port, threads, scheduler=True, every=every)


@click.command()
@click.option("--url", help="Where drip is served (default: base_url in campaigns.toml).")
@click.pass_obj
def snippet(app: Any, url: str | None) -> None:
    """Print an HTML signup form for the clinic's own website to paste in."""
    from .snippet import signup_snippet

    click.echo(signup_snippet(app.config, url), nl=False)


@click.command("purge-pending")
@click.option("--now", "now_text", metavar="ISO-8601", help="Simulate the clock.")
@click.option(
    "--days",
    default=rights.PENDING_TTL.days,
    show_default=True,
    type=click.IntRange(min=1),
    help="Unconfirmed signups older than this are purged.",
)
@click.pass_obj
def purge_pending(app: Any, now_text: str | None, days: int) -> None:
    """Delete signups never confirmed within DAYS (`drip send` and `drip run` do this with
    the default)."""
    from datetime import timedelta

    now = parse_now(now_text) or datetime.now(UTC)
    with Session(app.engine) as session:
        deleted, reverted = rights.purge_pending(session, now, timedelta(days=days))
        session.commit()
    click.echo(rights.purged_line(deleted, reverted))


@click.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("drip-demo"),
    show_default=True,
    help="Where the demo databases and outbox go.",
)
@click.option(
    "--weeks", default=6, show_default=True, help="Simulated weeks for the sample patients."
)
@click.option(
    "--serve/--no-serve",
    default=True,
    show_default=True,
    help="After the sample patients, start the web app and mail catcher.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.pass_obj
def demo(app: Any, folder: Path, weeks: int, serve: bool, host: str, port: int) -> None:
    """Try drip on this computer: sample patients, then sign up yourself in a browser.

    Nothing leaves this computer: emails go to a built-in mail catcher.
    """
    from ..demo import run_demo

    if serve and importlib.util.find_spec("aiosmtpd") is None:
        _fail(
            "the live demo's mail catcher needs aiosmtpd: install it with "
            "`pip install 'drip[demo]'` (in a clone: `pip install '.[demo]'`), "
            "or run `drip demo --no-serve` for the sample patients only"
        )
    index = run_demo(app.settings.config_path, folder, weeks=weeks, echo=click.echo)
    click.echo(f"\nOpen {index} in a browser to read every email as the patients got it.")
    if not serve:
        return
    from ..demo.live import LiveDemo
    from .server import setup_logging

    setup_logging()
    try:
        live = LiveDemo(app.settings.config_path, folder, host, port)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port} ({exc}); try --port 0 for any free port")
    click.echo(
        "\nThe live demo is running. Open in your browser:\n"
        f"  sign up:      {live.url}/subscribe\n"
        f"  mail catcher: {live.url}/demo/mail\n"
        "Sign up with any address: every email lands in the mail catcher, nothing leaves\n"
        "this computer. The catcher's buttons move the demo clock on. Ctrl+C stops."
    )
    live.run()


def register(main: click.Group) -> None:
    """Add the web commands to `main`."""
    main.add_command(serve)
    main.add_command(run)
    main.add_command(snippet)
    main.add_command(demo)
    group = main.commands.get("subscribers")
    if isinstance(group, click.Group):
        group.add_command(purge_pending)
