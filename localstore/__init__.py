"""The local store: one shared process that owns every file the plugin writes for ``docker logs``.

It takes the readers' batches and appends them to one folder per container (named after the full container
id) in Docker's ``local`` record layout, and it answers ReadLogs requests (tail, since, until, follow) that the
supervisor forwards, streaming the stored frames straight into a socket the supervisor relays to dockerd.
"""
