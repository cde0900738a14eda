"""`drip demo`: the whole product on the embedded defaults, in one command.

First, sample patients (demo/sample.py): simulated weeks of `drip send`, every
email in an outbox folder with an index page. Then, unless --no-serve, the live
demo (demo/live.py): the web app, the scheduler and a local mail catcher.

Nothing here is part of the production web app; the live demo needs the `demo`
extra (aiosmtpd), so this package's top imports only the sample part.
"""

from __future__ import annotations

from .sample import (
    DEMO_SECRET,
    DEMO_START,
    DemoPatient,
    demo_newsletters,
    demo_patients,
    run_demo,
    write_index,
)

__all__ = [
    "DEMO_SECRET",
    "DEMO_START",
    "DemoPatient",
    "demo_newsletters",
    "demo_patients",
    "run_demo",
    "write_index",
]
