"""The only place optimisers run: the shared core and the two trainers."""
