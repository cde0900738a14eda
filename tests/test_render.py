"""Templates: compiled once, rendered per subscriber, broken ones caught with their line."""

from __future__ import annotations

import base64
import email.policy
from datetime import timedelta
from email import message_from_bytes
from email.utils import format_datetime

import pytest
from conftest import FIXTURES, REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from drip.config import load_config
from drip.message import HeaderInjection, build_message
from drip.render import Renderer, subscriber_context

LINKS = {"unsubscribe_url": "https://clinic.test/u/T", "preferences_url": "https://clinic.test/p/T"}


def write_template(project, name: str, body: str) -> None:
    (project.templates / f"{name}.mjml").write_text(body)


def check_output(project) -> str:
    result = project.cli("check")
    assert result.exit_code == 1, result.output
    return result.output


SECTION = """<mj-section>
  <mj-column>
    <mj-text>
      {body}
    </mj-text>
  </mj-column>
</mj-section>
"""


def test_jinja_syntax_error_names_template_and_line(project):
    write_template(project, "causes", SECTION.format(body="<p>{% if symptoms.night_cramps %}x</p>"))
    out = check_output(project)
    assert f"{project.templates}/causes.mjml:" in out
    assert "Unexpected end of template" in out or "endif" in out


def test_undefined_variable_names_template_line_and_suggestion(project):
    write_template(project, "causes", SECTION.format(body="<p>Hi {{ frist_name }}</p>"))
    out = check_output(project)
    assert (
        f"{project.templates}/causes.mjml:4: unknown variable 'frist_name'; "
        "did you mean 'first_name'?" in out
    )


def test_unknown_symptom_key_in_template_fails_check(project):
    write_template(
        project, "causes", SECTION.format(body="{% if symptoms.nigth_cramps %}<p>x</p>{% endif %}")
    )
    out = check_output(project)
    assert "nigth_cramps" in out and "causes" in out


@pytest.mark.parametrize(
    "body,message",
    [
        ("{% if step.number < 2 %}<p>x</p>{% endif %}", "'<' inside"),
        (
            '<p>x</p></mj-text><mj-image width="{{ clinic.name }}px" src="https://clinic.test/a.png"'
            ' alt="a" /><mj-text>',
            "widths must be fixed",
        ),
        ('<a href="{{ clinic.booking_url ~ "x" }}">x</a>', "single quotes"),
        ("<a href=\"{{ clinic.booking_url ~ '?a=1' }}\">x</a>", None),
    ],
)
def test_mjml_pitfalls_are_rejected_with_a_line(project, body, message):
    write_template(project, "causes", SECTION.format(body=body))
    result = project.cli("check")
    if message is None:  # single quotes inside the Jinja are fine
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1 and message in result.output
    assert f"{project.templates}/causes.mjml:" in result.output


def test_if_around_a_column_is_rejected(project):
    write_template(
        project,
        "causes",
        """<mj-section>
  {% if symptoms.night_cramps %}
  <mj-column><mj-text><p>x</p></mj-text></mj-column>
  {% endif %}
</mj-section>""",
    )
    out = check_output(project)
    assert "causes.mjml:2:" in out and "around an <mj-column>" in out


def test_double_quotes_inside_jinja_in_an_mjml_attribute_are_rejected(project):
    write_template(
        project,
        "causes",
        """<mj-section>
  <mj-column>
    <mj-button href="{{ clinic.booking_url ~ "?a=1" }}">Book</mj-button>
  </mj-column>
</mj-section>""",
    )
    out = check_output(project)
    assert "causes.mjml:3:" in out and "single quotes" in out


def test_unknown_mjml_tag_is_rejected(project):
    write_template(
        project, "causes", "<mj-section><mj-colum><mj-text>x</mj-text></mj-colum></mj-section>"
    )
    assert "unknown MJML tag <mj-colum>" in check_output(project)


def test_each_template_is_compiled_once_per_run(project):
    config = load_config(project.config)
    renderer = Renderer(config.templates_dir)
    campaign = config.campaign("leg-health")
    for i in range(50):
        for step in campaign.steps:
            ctx = subscriber_context(
                config,
                first_name=f"P{i}",
                symptoms={"night_cramps"},
                links=LINKS,
                campaign=campaign,
                step=step,
            )
            renderer.render(step, ctx)
    # four steps share three templates (two use "causes")
    assert renderer.compilations == 3


def test_a_name_with_html_is_shown_as_text_and_never_as_markup(project):
    config = load_config(project.config)
    step = config.campaign("leg-health").steps[0]
    ctx = subscriber_context(
        config,
        first_name='<b onclick="x()">Eve</b>',
        symptoms=set(),
        links=LINKS,
        campaign=config.campaign("leg-health"),
        step=step,
    )
    rendered = Renderer(config.templates_dir).render(step, ctx)
    assert "<b onclick" not in rendered.html
    assert "&lt;b onclick=&#34;x()&#34;&gt;Eve&lt;/b&gt;" in rendered.html


def test_a_name_with_line_breaks_cannot_reach_headers(project):
    result = project.cli(
        "subscribers",
        "add",
        "crlf@example.org",
        "--symptoms",
        "night_cramps",
        "--confirmed",
        "--name",
        "Eve\r\nBcc: victim@example.org",
        "--now",
        "2026-06-01T15:00:00Z",
    )
    assert result.exit_code == 0
    result = project.cli("subscribers", "show", "crlf@example.org")
    assert "first_name             Eve Bcc: victim@example.org" in result.output
    with pytest.raises(HeaderInjection):
        build_message(
            from_address="a@b.test",
            to="c@d.test",
            subject="Hi\r\nBcc: x@y.test",
            text="t",
            html="h",
            date=__import__("datetime").datetime.now(__import__("datetime").UTC),
            message_id="<1@b.test>",
        )


def test_text_part_is_readable_on_its_own(project):
    config = load_config(project.config)
    campaign = config.campaign("leg-health")
    step = campaign.step("causes")
    ctx = subscriber_context(
        config,
        first_name=None,
        symptoms={"walking_cramps"},
        links=LINKS,
        campaign=campaign,
        step=step,
    )
    text = Renderer(config.templates_dir).render(step, ctx).text
    assert text.splitlines()[2] == "Hello,"
    assert "Book a visit: https://clinic.test/book" in text
    assert "Unsubscribe: https://clinic.test/u/T" in text
    assert "Please see a doctor about this soon." in text
    assert "<" not in text and "{{" not in text and "\n\n\n" not in text


def authored_text(project, body: str):
    """The welcome step with an authored text part: `body`, then the footer every
    email needs (unsubscribe link, address, disclaimer, preferences)."""
    (project.templates / "welcome.txt").write_text(
        body + "Stop: {{ unsubscribe_url }}\n"
        "{{ clinic.name }}, 1 Test Street. General information, not a diagnosis. Call "
        "{{ clinic.emergency_number }}. Preferences: {{ preferences_url }}\n"
    )
    config = load_config(project.config)
    campaign = config.campaign("leg-health")
    return config, campaign, campaign.step("welcome")


def test_authored_text_template_wins(project):
    config, campaign, step = authored_text(
        project, "Hi {{ first_name or 'there' }}\n\nPlain words.\n"
    )
    ctx = subscriber_context(
        config, first_name="Ann", symptoms=set(), links=LINKS, campaign=campaign, step=step
    )
    assert Renderer(config.templates_dir).render(step, ctx).text.startswith("Hi Ann\n")


def test_message_bytes_parse_back_with_unicode_subject():
    from datetime import UTC, datetime

    data = build_message(
        from_address="Clínica Sol <news@sol.test>",
        to="p@x.test",
        subject="Bienvenida, María",
        text="Hola María\n" + "x" * 2000,
        html="<p>" + "y" * 3000 + "</p>",
        date=datetime.now(UTC),
        message_id="<abc@sol.test>",
        reply_to="desk@sol.test",
        extra_headers={"X-Drip-Ref": "abc"},
    )
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    msg = message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "Bienvenida, María"
    assert msg["From"].addresses[0].display_name == "Clínica Sol"
    text, html = msg.iter_parts()
    assert text.get_content().replace("\r\n", "\n") == "Hola María\n" + "x" * 2000
    assert html.get_content() == "<p>" + "y" * 3000 + "</p>"
    assert not msg.defects and not text.defects
    lines = html.get_payload().split("\r\n")  # base64 in lines of 76 (RFC 2045 6.8)
    assert {len(line) for line in lines[:-1]} == {76} and 0 < len(lines[-1]) <= 76


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(timezones=st.none() | st.timezones()),
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(seconds=3)),
)
def test_date_header_is_format_datetime_of_each_message_time(moment, later):
    """The Date header is remembered per second of wall clock and UTC offset (a run's
    messages share a few seconds); every message still gets its own time's."""
    for when in (moment, moment + later if moment.year < 9999 else moment):
        data = build_message(
            from_address="news@sol.test",
            to="p@x.test",
            subject="Hi",
            text="t",
            html="h",
            date=when,
            message_id="<abc@sol.test>",
        )
        assert f"\r\nDate: {format_datetime(when)}\r\n".encode() in data


def test_jinja_lost_in_the_text_part_is_rejected(project):
    write_template(
        project,
        "causes",
        """<mj-section>
  <mj-column>
    {% if symptoms.walking_cramps %}
    <mj-button href="{{ clinic.booking_url }}">Book</mj-button>
    {% endif %}
  </mj-column>
</mj-section>""",
    )
    out = check_output(project)
    assert "is lost when the HTML becomes plain text" in out and "causes" in out


@settings(max_examples=300, deadline=None)
@given(html=st.text(max_size=3000))
def test_the_html_part_is_base64_in_lines_of_76_that_decode_to_it(html):
    from drip.message import _base64

    lines = _base64(html).split(b"\r\n")
    assert all(len(line) == 76 for line in lines[:-1]) and len(lines[-1]) <= 76
    assert base64.b64decode(b"".join(lines)) == html.encode("utf-8")
    assert b"".join(lines) == base64.b64encode(html.encode("utf-8"))  # canonical, as the stdlib


# -- variants: one Jinja render per variant, each patient's own values filled in -------

SHIPPED = load_config(REPO / "campaigns.toml")
BASIC = load_config(FIXTURES / "basic" / "campaigns.toml")
NAMES = st.one_of(
    st.sampled_from(["", "Pat", "*Pat", " Pat ", "<b>Eve</b>", 'O"Neil & Co', "José", "x\u2028y"]),
    st.text(max_size=12),
)


def _every_step(config):
    steps = [(c, s) for c in config.campaigns for s in c.steps]
    return steps + [(n.campaign, n.step) for n in config.newsletters]


@settings(max_examples=60, deadline=None)
@given(
    world=st.sampled_from([SHIPPED, BASIC]),
    pick=st.integers(min_value=0),
    answers=st.lists(st.integers(min_value=0, max_value=30), max_size=6),
    names=st.lists(NAMES, min_size=2, max_size=4),
    query=st.sampled_from(["", "?a=1&b='2'", '?q="x"<y>']),
)
def test_a_variant_filled_in_is_the_full_render(world, pick, answers, names, query):
    """For every step, any answers and any names (empty, markup, quotes, a "*" that
    tidying the text part treats as a bullet, a line separator), the email from the
    variant is the email Jinja renders in full, character for character."""
    campaign, step = _every_step(world)[pick % len(_every_step(world))]
    keys = sorted(world.symptoms) + sorted(world.red_flags)
    symptoms = {keys[i % len(keys)] for i in answers}
    reuse, full = Renderer(world.templates_dir), Renderer(world.templates_dir, reuse=False)
    for i, name in enumerate(names):  # patients with the same answers: one variant
        links = {
            "unsubscribe_url": f"https://clinic.test/u/{i}{query}",
            "preferences_url": f"https://clinic.test/p/{i}{query}",
        }
        ctx = subscriber_context(
            world, first_name=name, symptoms=symptoms, links=links, campaign=campaign, step=step
        )
        assert reuse.render(step, ctx) == full.render(step, ctx)


def test_patients_with_the_same_answers_share_one_render_and_keep_their_own_values():
    campaign = SHIPPED.campaigns[0]
    step = campaign.steps[0]
    renderer = Renderer(SHIPPED.templates_dir)
    htmls = set()
    for i in range(50):
        ctx = subscriber_context(
            SHIPPED,
            first_name=f"Pat{i}",
            symptoms={"night_cramps"},
            links={
                "unsubscribe_url": f"https://c.test/u/{i}",
                "preferences_url": "https://c.test/p",
            },
            campaign=campaign,
            step=step,
        )
        html = renderer.render(step, ctx).html
        assert f"Pat{i}" in html and f"https://c.test/u/{i}" in html
        htmls.add(html)
    assert len(htmls) == 50
    assert renderer.variants is not None and renderer.variants.renders == 2  # HTML and text


@pytest.mark.parametrize(
    "source,printed",
    [
        ("Hello {{ first_name }}, {{ unsubscribe_url }}", {"first_name", "unsubscribe_url"}),
        ("{% if first_name %}Hi {{ first_name }}{% else %}Hi{% endif %}", {"first_name"}),
        ("{% if confirm_url is defined %}x{% elif not first_name %}y{% endif %}", set()),
        ("{{ 'a' if first_name else 'b' }}{{ symptoms.night_cramps }}", set()),
        ("{{ first_name|upper }}", None),
        ("{{ first_name or 'there' }}", None),
        ("{{ first_name ~ '!' }}", None),
        ("{% if first_name == 'Pat' %}x{% endif %}", None),
        ("{% set n = first_name %}{{ n }}", None),
        ("{% filter upper %}{{ first_name }}{% endfilter %}", None),
        ("{% autoescape false %}{{ first_name }}{% endautoescape %}", None),
        ("{% macro m(x) %}{{ first_name }}{% endmacro %}{{ m(1) }}", None),
        ("{{ first_name.upper() }}", None),
        ("{% for c in first_name %}{{ c }}{% endfor %}", None),
        ("{{ first_name }} {{ [1, 2]|random }}", None),  # differs from render to render
        ("{{ first_name }} {{ lipsum(1) }}", None),
    ],
)
def test_which_templates_can_be_filled_in(source, printed):
    """Only printing a personal value, or testing whether it is set, keeps the
    variant exact; anything else renders per patient."""
    from jinja2 import Environment

    from drip.variants import shape_of

    shape = shape_of(Environment(autoescape=True).parse(source))
    assert (None if shape is None else set(shape.printed)) == printed


@pytest.mark.parametrize("name", ["*Pat", "Ann", ""])
def test_a_name_that_starts_a_text_line_is_tidied_as_jinja_would_have_it(project, name):
    """Tidying the text part strips each line but keeps a "*" bullet's indent; a
    name at the start of a line could change that, so such a value is rendered in
    full, and the result is the full render's either way."""
    config, campaign, step = authored_text(
        project, "Hello\n  {{ first_name }}  \n\n\n\n  * a bullet\n"
    )
    reuse, full = Renderer(config.templates_dir), Renderer(config.templates_dir, reuse=False)
    for first in ("Bo", name):
        ctx = subscriber_context(
            config, first_name=first, symptoms=set(), links=LINKS, campaign=campaign, step=step
        )
        assert reuse.render(step, ctx).text == full.render(step, ctx).text


class _Moody:
    """A value whose truth cannot be asked (as a numpy array's)."""

    def __bool__(self) -> bool:
        raise ValueError("ambiguous")

    def __str__(self) -> str:
        return "moody"


def test_values_a_variant_cannot_vouch_for_render_in_full(project):
    """Found by a red-team pass: falsy values equal in Python but printed apart (0,
    False, -0.0), a value whose truth raises, a value only an untaken branch
    prints, and context parts that can still change under the same object. The
    email must be the full render's every time, and one patient's value must never
    show in another's."""
    from types import MappingProxyType

    config, campaign, step = authored_text(
        project,
        "Hi {{ first_name }} {{ confirm_url }} {{ clinic.name }}\n"
        "{% if symptoms.night_cramps %}{{ preheader }}{% endif %}\n",
    )
    reuse, full = Renderer(config.templates_dir), Renderer(config.templates_dir, reuse=False)

    def patient(confirm: object) -> dict:
        ctx = subscriber_context(
            config, first_name="Ann", symptoms=set(), links=LINKS, campaign=campaign, step=step
        )
        ctx["confirm_url"] = confirm
        return ctx

    for confirm in (False, 0, 0.0, -0.0, None, "", _Moody(), "https://c.test/c"):
        ctx = patient(confirm)
        assert reuse.render(step, ctx) == full.render(step, ctx), confirm
    # parts that look read-only but are not: a proxy over a dict someone still holds,
    # a tuple holding a list; the same objects for every patient, changed in between
    clinic = dict(patient("")["clinic"])
    names = ["one"]
    proxy, extra = MappingProxyType(clinic), (names,)
    for i in range(3):
        ctx = patient("")
        ctx["clinic"], ctx["extra"] = proxy, extra
        assert reuse.render(step, ctx) == full.render(step, ctx), i
        clinic["name"] = f"Clinic {i}"
        names[0] = f"changed {i}"
