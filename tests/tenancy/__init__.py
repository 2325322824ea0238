"""Tests of tenancy: workspaces and their local-time jobs."""
