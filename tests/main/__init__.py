"""Tests of the process edges: the command, the demo, the schedule, migrations and outages."""
