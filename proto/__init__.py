"""Wire formats shared by every process of the plugin.

- ``entry.proto`` / ``entry_pb2``: Docker's ``LogEntry`` as dockerd writes it to the FIFO and reads it back
  from ``/LogDriver.ReadLogs``.
- ``framing``: the ``[uint32 BE length][LogEntry]`` framing of the FIFO and of ReadLogs, and the on-disk record
  (``[length][LogEntry][length]``, Docker's ``local`` driver layout).
- ``messages``: every message the plugin's processes exchange, and the exit codes of its children.

This package imports nothing else of ours.
"""
