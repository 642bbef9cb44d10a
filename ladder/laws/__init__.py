"""Scaling laws: generic fitting (`fitting`), the two-step task predictor and its variants.

numpy/scipy only (never JAX): usable from a notebook on any laptop.
"""
