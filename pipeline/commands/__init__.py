"""What the command line's commands do and print, one module per command family.

``cli.py`` only declares the commands and their options; each command calls one function
here (pipeline commands: scan, extract, transcribe, store, weights) or in :mod:`heads`.
"""
