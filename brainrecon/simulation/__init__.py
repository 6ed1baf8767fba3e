"""The built-in simulated subject: procedural RGBD scenes (simulate.py) and voxel responses from a published
model of visual cortex (soc.py, with the source of every parameter), written in the release formats."""
