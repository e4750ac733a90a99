"""Calibration: measure step-time profiles on a GPU (profile.py), compare a real replay with
a simulated one step by step and request by request (validate.py)."""
