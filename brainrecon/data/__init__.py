"""The only place dataset files are parsed or written."""
