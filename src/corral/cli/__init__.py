"""The ``corral`` command line; the commands live in :mod:`corral.cli.main`."""
