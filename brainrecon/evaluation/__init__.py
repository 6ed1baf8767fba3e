"""Evaluation, one job per module: statistics (n-way identification, bootstrap), distances (one matrix per metric,
depth errors), identification (`evaluate`: runs -> tables and plots), compare (paired differences between runs),
nsd_suite (`evaluate --suite nsd`), classify (`brainrecon classify`: large-scale semantic classification),
depth_from_rgb (`evaluate --depth-from-rgb`: MiDaS on the reconstructed RGB against the decoded depth)."""
