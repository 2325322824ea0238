"""The inbox: comments and mentions from the workspaces' social accounts (spec 003 §8.3)."""
