"""The ``fleet`` command line: the top layer, free to use every layer below."""


def run() -> None:
    """The ``fleet`` command's entry: import the CLI with the garbage collector paused
    (start-up creates many objects that live as long as the process; collecting while
    importing them only costs the command's start time), then run it."""
    import gc

    gc.disable()
    try:
        from fleet.cli.main import main
    finally:
        gc.enable()
    main()
