"""Thin Lightning adapters. Analyses live in interp.analyses; callbacks only call them."""

from interp.callbacks.analysis import AnalysisCallback
from interp.callbacks.throughput import Throughput

__all__ = ["AnalysisCallback", "Throughput"]
