"""Alembic migrations of the clinic database (run by ``dermsight clinic upgrade`` and at start)."""
