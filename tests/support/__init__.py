"""Helpers shared by test modules (imported, not collected): fakes, fixtures, servers and expected scores."""
