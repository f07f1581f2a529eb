"""Command line: ``ergo-ray <stage>``. One module per stage, loaded on demand."""
