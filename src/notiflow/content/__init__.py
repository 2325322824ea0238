"""Posts: drafts, the approval flow and scheduling of a workspace's content."""
