"""Concurrent reading of small files: the GETs of one reading unit in flight together.

A unit of FITS cutouts is hundreds of small objects; read one after another from object
storage, each costs a full round trip. :class:`Prefetcher` keeps up to ``ahead`` reads
in flight on a thread pool, in the order the consumer will ask for them, and hands each
file's bytes (or re-raises its read error) when asked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ergo_ray.io import storage as st

if TYPE_CHECKING:
    from ergo_ray.config.schema import StorageConfig

__all__ = ["FETCH_AHEAD", "FETCH_THREADS", "Prefetcher"]

#: Reads in flight at once for one unit.
FETCH_THREADS = 16
#: Files read ahead of the consumer (bounds the memory held: ``ahead`` files).
FETCH_AHEAD = 48


class Prefetcher:
    """Read ``urls`` concurrently, ahead of a consumer that asks for them in order.

    Parameters
    ----------
    urls : sequence of str
        Every file the consumer will read, in the order it will read them.
    storage : StorageConfig, optional
        Storage settings.
    threads : int
        Concurrent reads.
    ahead : int
        Reads submitted ahead of the consumer.

    Notes
    -----
    Use as a context manager; :meth:`read` has the signature of
    :func:`ergo_ray.io.storage.read_bytes`. A URL not (or no longer) in ``urls`` is read
    directly.
    """

    def __init__(
        self,
        urls: Sequence[str],
        storage: StorageConfig | None = None,
        threads: int = FETCH_THREADS,
        ahead: int = FETCH_AHEAD,
    ) -> None:
        self._storage = storage
        self._todo = deque(urls)
        self._ahead = max(1, int(ahead))
        self._submitted: deque[tuple[str, Future[bytes]]] = deque()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(int(threads), len(urls))),
            thread_name_prefix="ergo-fetch",
        )
        self._fill()

    def _fill(self) -> None:
        while self._todo and len(self._submitted) < self._ahead:
            url = self._todo.popleft()
            self._submitted.append(
                (url, self._pool.submit(st.read_bytes, url, self._storage))
            )

    def read(self, url: str, storage: StorageConfig | None = None) -> bytes:
        """Return the bytes of ``url``; raise what reading it raised.

        Files listed before ``url`` that the consumer did not ask for (the other
        bands of an object whose first band failed) are dropped from the read-ahead.

        Parameters
        ----------
        url : str
            File URL.
        storage : StorageConfig, optional
            Used only for a URL that was not prefetched.

        Returns
        -------
        bytes
            The file's content.
        """
        if not any(u == url for u, _ in self._submitted):
            if url in self._todo:
                while self._todo[0] != url:
                    self._todo.popleft()
                for _, skipped in self._submitted:  # all of them lie before url
                    skipped.cancel()
                self._submitted.clear()
                self._fill()
            else:
                return st.read_bytes(
                    url, storage if storage is not None else self._storage
                )
        while True:
            u, fut = self._submitted.popleft()
            if u == url:
                break
            fut.cancel()
        self._fill()
        return fut.result()

    def close(self) -> None:
        """Cancel the reads not yet started and wait for those running."""
        self._todo.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
