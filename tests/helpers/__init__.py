"""Helpers shared by the tests: loopback servers, builders, paths. No tests here."""
