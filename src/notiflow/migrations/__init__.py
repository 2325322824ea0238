"""Alembic migrations, run programmatically by ``notiflow serve`` / ``notiflow db upgrade``."""
