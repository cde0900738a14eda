from drip.cli import entry

entry()
