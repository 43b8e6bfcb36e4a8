"""The fault soak: see soak/__main__.py."""
