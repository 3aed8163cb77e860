"""Doctest collection of the package: skip the modules whose optional framework is missing
(``nncabac.flower`` needs flwr, which needs Python 3.11+)."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("flwr") else ["python/nncabac/flower.py"]
