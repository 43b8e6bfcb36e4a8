"""Coordination between instances: in-process for one server, a Redis link for many."""
