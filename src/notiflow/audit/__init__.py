"""The audit trail of configuration changes (spec 000 §7)."""
