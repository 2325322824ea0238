"""Shared building blocks: database, errors, after-commit side effects, pagination, tenant
scoping, logging."""
