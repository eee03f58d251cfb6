# Shared fixtures live in tests/support/ so each area owns its own module.
pytest_plugins = ["support.mlflow_server", "support.rslrl_versions"]
