"""corral's own benchmark: corral against a direct connection to the same simulator, same run.

Run it from the repository root with ``python -m bench`` (``make bench``); ``bench/__main__.py``
says what it measures and how.
"""
