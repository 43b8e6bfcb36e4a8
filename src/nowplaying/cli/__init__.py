"""The `nowplaying` command: serve, login, setup, doctor, now."""
