"""Stand-ins for the external services the platform talks to, served locally for tests."""
