"""Loopback only: what tells the libraries that report usage to public hosts not to (MLflow
3's telemetry, onnxruntime's since 1.29). tests/conftest.py sets these for the test process
and every process it starts, before any of the libraries is imported; the launcher sets the
same itself, and its own test takes them out to see that it does."""

TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                 "ORT_DISABLE_TELEMETRY": "1"}
