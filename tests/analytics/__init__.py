"""Tests of analytics: metric snapshots and the summary."""
