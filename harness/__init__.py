"""The harness: the demo, the benchmarks and the live simulator, on the simulated ECS service.

Built on ``simulation/`` through the same bootstrap as production (``service.bootstrap``), so what
they measure is what runs; ``service/`` never imports ``simulation/`` or this package.
"""
