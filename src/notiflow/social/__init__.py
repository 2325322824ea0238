"""Social accounts of a workspace and the adapters that talk to each network."""
