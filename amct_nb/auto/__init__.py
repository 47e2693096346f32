"""Accuracy-based automatic calibration: the most int8 layers that keep the metric within a target."""
