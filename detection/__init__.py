"""Pure detection layer: metric specs, seasonal baselines, detectors and the Anomaly type.

Nothing here talks to the world: it takes and returns pandas/numpy data and dataclasses.
"""
