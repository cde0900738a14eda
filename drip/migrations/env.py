"""Alembic environment: drip passes its engine in through config.attributes."""

from alembic import context

from drip.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` run by hand from the repository
    from drip.db import make_engine
    from drip.settings import Settings

    engine = make_engine(Settings.from_env().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
