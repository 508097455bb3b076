"""The ``fleet`` command line: the top layer, free to use every layer below."""
