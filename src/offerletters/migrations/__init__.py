"""The ledger's Alembic migrations, inside the package so an installed wheel migrates.

Applied by `Ledger.migrate()`. For a new revision, run from the repository:
`uv run alembic -c src/offerletters/migrations/alembic.ini revision
--autogenerate --rev-id NNNN -m "what changes"`.
"""
