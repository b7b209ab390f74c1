"""Wire formats, and the little else every process of the plugin shares.

- ``entry.proto`` / ``entry_pb2``: Docker's ``LogEntry`` as dockerd writes it to the FIFO and reads it back
  from ``/LogDriver.ReadLogs``.
- ``framing``: the ``[uint32 BE length][LogEntry]`` framing of the FIFO and of ReadLogs, and the on-disk record
  (``[length][LogEntry][length]``, Docker's ``local`` driver layout).
- ``messages``: every message the plugin's processes exchange, and the exit codes of its children.
- ``options``: the log-option error, the secret option names, redaction of what may be shown, RE2 for user regexes.
- ``paths``: what a container id looks like, and the local store's ZeroMQ endpoints.

This package imports nothing else of ours (an import-linter contract in pyproject.toml).
"""
