"""`drip report`: a self-contained HTML report with charts, for marketers.

- data.py: the only I/O: reads drip's own records (subscribers, deliveries, audit log).
- series.py: pure functions from those records to weekly numbers.
- charts.py: pure chart geometry (bars, lines) for the inline SVG.
- page.py: the HTML page (Jinja template, inline CSS and SVG, no JavaScript).
- command.py: the thin CLI command.

No open or click tracking: the report shows only what drip knows from its own records.
"""
