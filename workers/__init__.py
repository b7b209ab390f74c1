"""The per-container reader: one forked process per FIFO that dockerd hands us in StartLogging.

It reads the FIFO in large chunks, cuts the ``[length][LogEntry]`` frames, decodes and checks them, and sends
batches of ready-to-store records over ZeroMQ (a DEALER to the local store's ROUTER). It never stops draining the
FIFO because of bad input, so a corrupt stream never blocks the container; a crash here costs only this container's
reader.
"""
