"""Post metrics: snapshots of each published post's counts over time."""
