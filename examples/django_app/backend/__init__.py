"""The app that owns the backend pool (see apps.BackendConfig)."""
