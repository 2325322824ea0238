"""Tests of kit: retry timing, giving up, job payloads, bulk inserts, metrics, crypto, leases."""
