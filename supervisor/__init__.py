"""The supervisor: the plugin's main process (PID 1 inside the plugin container).

It serves the plugin socket (HTTP/1.1 on a unix socket, on uvloop), validates StartLogging's options, forks one
reader per FIFO from its warmed interpreter, runs the shared local store (and shipper), reaps and respawns its
children with back-off, relays ReadLogs streams, and answers ``/stats``.
"""
