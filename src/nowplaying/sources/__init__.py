"""Upstreams of what someone plays, each behind the :class:`~.base.Source` protocol."""
