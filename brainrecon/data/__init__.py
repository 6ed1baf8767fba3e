"""Release formats, the data folder layout, image trees, datasets and the download library: where files are read and
written."""
