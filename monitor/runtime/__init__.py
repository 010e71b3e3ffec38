"""Wiring: the poll pipeline, worker processes, the daemon and its service plumbing."""
