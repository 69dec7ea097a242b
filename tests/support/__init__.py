"""Real helpers for tests: loopback HTTP servers, database set-up."""
