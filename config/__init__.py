"""Settings of orchestral-stream: `Settings` (typed, declared once) and `load_settings`."""

from config.settings import ENV_PREFIX, Settings, load_settings

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]
