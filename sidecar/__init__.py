"""The Edit3D sidecar: a ZeroMQ server that owns the GPU.

It keeps sessions on disk (`sessions`), runs one heavy job at a time in a worker process
(`jobs`, `worker`), streams events with per-session sequence numbers (`events`) and answers
requests from the Blender add-on or any `protocol.Client` (`server`). The method itself lives
in `edit3d`; the job functions here only call its public API.
"""

__version__ = "0.1.0"
