"""Release formats, the data folder layout, image trees, datasets and fetch-data: where files are read and written."""
