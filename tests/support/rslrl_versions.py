"""Run code under each rsl-rl version that Isaac Lab images ship (filled in by the backend work)."""
