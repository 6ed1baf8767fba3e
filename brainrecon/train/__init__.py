"""The only place optimisers run: the two trainers, the loop they share, checkpoints, ranks, guards and logs."""
