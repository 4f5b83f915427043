"""Redis plumbing: URLs, Sentinel, Cluster, and the one place that picks a client for a URL.

* :mod:`.urls`: URLs naming several servers, split once;
* :mod:`.sentinel`, :mod:`.cluster`: ``redis+sentinel://`` and ``redis+cluster://``;
* :mod:`.clients`: which kind of Redis a URL names, decided once, and the clients built
  for it (the project's own, bullmq's, the readiness probe's).
"""
