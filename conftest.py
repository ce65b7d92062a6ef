"""Root conftest: plugins must be declared here (pytest refuses them in nested conftests)."""

pytest_plugins = ["pytest_jupyter.jupyter_server"]
