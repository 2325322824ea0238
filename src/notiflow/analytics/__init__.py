"""Post metrics: snapshots of each published post's counts over time (spec 003 §8.4)."""
