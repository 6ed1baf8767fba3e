"""The only place networks are defined."""
