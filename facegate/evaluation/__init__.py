"""Offline evaluation: the in-process pipeline, LFW protocols, verification metrics, calibration."""
