"""The inbox: comments and mentions from the workspaces' social accounts."""
