"""The embedded environment: a simulated ECS service on the local AWS endpoint.

Its metrics respond to load, seasonality, injected faults and the ECS actions taken on it.
"""
