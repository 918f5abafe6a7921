"""The FastAPI app and the `cityops` command line: thin faces over gis, layers, tiles and drone."""
