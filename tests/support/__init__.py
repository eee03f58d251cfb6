"""Fixtures shared by the test areas (client, runtime, local)."""
