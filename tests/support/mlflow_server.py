"""A real `mlflow server` on 127.0.0.1 for tests (filled in by the runtime work)."""
