"""A cap on how much of an answer the shipper reads: a buggy or hostile server cannot fill its memory.

The shipper's aiohttp node (``shipper/output.py``) builds its session with ``response_class=BoundedResponse``.

elastic-transport reads every answer whole (``ClientResponse.read()``) before the client parses it. The biggest
honest bulk answer is a few hundred bytes per document (an error item with a long reason, 1,600 documents by
default: about 2 MB), so ``MAX_ANSWER`` leaves a wide margin; an answer beyond it fails the request as a
connection error naming the cause, and the shipper sends a smaller bulk.
"""

from __future__ import annotations

import aiohttp

MAX_ANSWER = 32 << 20
_CHUNK = 1 << 16


class AnswerTooLarge(aiohttp.ClientPayloadError):
    """An answer larger than ``MAX_ANSWER`` (declared or read); the connection is closed."""


class BoundedResponse(aiohttp.ClientResponse):
    """Reads at most ``MAX_ANSWER`` bytes of a (decompressed) body, then gives up and closes the connection."""

    async def read(self) -> bytes:
        if self._body is None:
            declared = self.content_length
            if declared is not None and declared > MAX_ANSWER:
                self.close()
                raise AnswerTooLarge(f"answer of {declared} bytes, more than the {MAX_ANSWER >> 20} MiB read")
            chunks: list[bytes] = []
            size = 0
            try:
                while chunk := await self.content.read(_CHUNK):
                    size += len(chunk)
                    if size > MAX_ANSWER:
                        raise AnswerTooLarge(f"answer longer than the {MAX_ANSWER >> 20} MiB read")
                    chunks.append(chunk)
            except BaseException:
                self.close()
                raise
            self._body = b"".join(chunks)
        return await super().read()

