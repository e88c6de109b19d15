"""Analyses: pure functions (model + inputs -> numbers and figures).

Callbacks and analyze.py both call these; no analysis code lives elsewhere.
"""
