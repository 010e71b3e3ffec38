"""Turning outbox rows into messages and sending them through apprise."""
