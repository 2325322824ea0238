"""Tenants, users and memberships."""
