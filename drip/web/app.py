"""The Flask app factory: pages, security headers, friendly errors.

`create_app` takes a ready Services (tests and the demo build their own) or builds
one from Settings (DRIP_* environment variables), so `drip serve`, `drip run` and
the demo all run the same app.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from .. import db
from ..config import load_config
from ..dkim import dkim_sign_for
from ..settings import Settings
from ..transport import Transport, transport_from_settings
from .advice import advice_for_post, every_advice
from .archive import bp as archive_bp
from .csrf import COOKIE, Csrf
from .hooks import bp as hooks_bp
from .options import WebOptions
from .pages import message_page
from .ratelimit import RateLimiter
from .routes import bp as pages_bp
from .services import Services, utc_now

log = logging.getLogger("drip.web")

AGAIN = "Please go back, reload the page and try again."
MESSAGES = {
    400: ("Something in that request was not right", AGAIN),
    403: ("That is not allowed", AGAIN),
    404: (
        "Page not found",
        "Please check the link. If it came from one of our emails, "
        "copy the whole link into your browser.",
    ),
    405: ("That did not work", "Please go back and use the button on the page."),
    413: ("That was too much text", "Please shorten your answers and try again."),
    429: ("Too many tries", "Please wait a while and try again later."),
    500: (
        "Sorry, something went wrong on our side",
        "It has been logged and we will look into it. Please try again later.",
    ),
}


def build_services(
    settings: Settings,
    options: WebOptions | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    transport_factory: Callable[[], Transport] | None = None,
) -> Services:
    """Services from DRIP_* settings; raises ConfigError or SettingsError if they are wrong."""
    config = load_config(settings.config_path)
    engine = db.make_engine(settings.database_url)
    db.ensure_schema(engine)
    factory = transport_factory or (
        lambda: transport_from_settings(settings.smtp_url, settings.outbox_dir)
    )
    return Services(
        config=config,
        engine=engine,
        secret=settings.require_secret(),
        transport_factory=factory,
        clock=clock,
        options=options or WebOptions.from_env(),
        sign=dkim_sign_for(settings, config),
        old_secrets=settings.old_secret_keys,
    )


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
) -> Flask:
    """The patient-facing app. Pass `services`, or `settings` (default: the environment).

    The demo adds its mail catcher's pages to it (drip/demo/pages.py).
    """
    if services is None:
        services = build_services(settings or Settings.from_env())
    app = Flask(__name__)
    options = services.options
    app.config.update(
        SECRET_KEY=services.secret,
        MAX_CONTENT_LENGTH=options.max_body,
        MAX_FORM_MEMORY_SIZE=options.max_body,
        MAX_FORM_PARTS=200,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions["drip"] = services
    app.extensions["drip.csrf"] = Csrf(services.secret, options.form_max_age)
    app.extensions["drip.limits"] = {
        "ip": RateLimiter(options.signups_per_ip),
        "address": RateLimiter(options.signups_per_address),
    }
    if options.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=options.trusted_proxies,
            x_proto=options.trusted_proxies,
            x_host=options.trusted_proxies,
            x_port=options.trusted_proxies,
        )

    app.register_blueprint(pages_bp)
    app.register_blueprint(hooks_bp)  # POST /hooks/bounces/<provider> (drip/web/hooks.py)
    app.register_blueprint(archive_bp)  # GET /newsletters, off unless newsletter_archive = true
    app.jinja_env.globals.update(
        clinic=services.config.clinic, csrf_token=_csrf_token, csp_nonce=_csp_nonce
    )
    services.listeners.append(lambda config: app.jinja_env.globals.update(clinic=config.clinic))
    app.before_request(_read_embed)
    app.context_processor(lambda: {"embed": g.get("embed", False)})
    app.after_request(_security_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _read_embed() -> None:
    """?embed=1: the page sits in an iframe on the clinic's site; drop header and footer."""
    g.embed = request.args.get("embed") == "1"


def _csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


def _csrf_token() -> str:
    """The hidden field's value; remembers to set the cookie if this browser has none."""
    csrf: Csrf = _app_ext("drip.csrf")
    nonce = Csrf.nonce_from(request.cookies.get(COOKIE))
    if nonce is None:
        nonce = g.get("csrf_new_nonce") or Csrf.new_nonce()
        g.csrf_new_nonce = nonce
    return csrf.token(nonce)


def _app_ext(name: str):  # type: ignore[no-untyped-def]
    from flask import current_app

    return current_app.extensions[name]


def _security_headers(response: Response) -> Response:
    services: Services = _app_ext("drip")
    nonce = g.get("csp_nonce")
    frame = " ".join(["'self'", *sorted(services.options.embed_origins)])
    policy = g.get("csp") or (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        + (f"script-src 'nonce-{nonce}'; " if nonce else "")
        + f"form-action 'self'; base-uri 'none'; frame-ancestors {frame}"
    )
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    # tokens live in URLs: never send them to another site as a Referer
    response.headers["Referrer-Policy"] = "same-origin"
    if not services.options.embed_origins:
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    new_nonce = g.get("csrf_new_nonce")
    if new_nonce:
        response.set_cookie(
            COOKIE,
            new_nonce,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,
            max_age=services.options.form_max_age,
        )
    return response


# the forms with warning-sign boxes: any error answering them shows the advice first
FORMS_WITH_FLAGS = ("drip.subscribe", "drip.preferences")


def _advice_extra(code: int) -> dict[str, object]:
    """The advice for the warning signs this failed post ticked, for the error page."""
    if request.endpoint not in FORMS_WITH_FLAGS or request.method != "POST":
        return {}
    services: Services = _app_ext("drip")
    if code == 413:  # the body was never read: show every sign's advice
        return {"advice": every_advice(services.config), "advice_unknown": True}
    advice, unknown = advice_for_post(services.config, request)
    return {"advice": advice, "advice_unknown": unknown}


def _http_error(exc: HTTPException) -> tuple[str, int] | HTTPException:
    code = exc.code or 500
    if code < 400:
        return exc
    title, text = MESSAGES.get(code, MESSAGES[400] if code < 500 else MESSAGES[500])
    log.info("%s %s -> %s", request.method, _where(), code)
    return message_page(title, text, code, **_advice_extra(code))


def _unexpected_error(exc: Exception) -> tuple[str, int]:
    log.exception("error on %s %s", request.method, _where())
    title, text = MESSAGES[500]
    try:
        return message_page(title, text, 500, **_advice_extra(500))
    except Exception:  # the error page itself failed: plain text, still no trace
        services: Services = _app_ext("drip")
        emergency = services.config.clinic.emergency_number
        return (
            f"{title}. {text} If you ticked a warning sign, do not wait for us: in an "
            f"emergency call {emergency}, or call your doctor today.",
            500,
        )


def _where() -> str:
    """The route, not the path: paths hold tokens, which do not belong in logs."""
    return request.url_rule.rule if request.url_rule else request.path[:40]
