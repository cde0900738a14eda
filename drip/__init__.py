"""drip: patient-education drip campaigns for clinics.

Data flow: signup -> subscriber -> campaign rules -> due steps -> render -> deliver
-> record. See README.md for the tour.
"""

# The one place the version is written: pyproject.toml reads it from here, and the
# quiet path reads it without importlib.metadata (about 30 ms on every cron run).
__version__ = "0.1.0"
