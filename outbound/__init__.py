"""Outbound HTTP: the one safe way this service requests a URL it was given."""
