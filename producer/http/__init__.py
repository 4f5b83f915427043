"""The HTTP API (``python -m producer``): the application, its plumbing, its routes.

Layered so that every module imports only those below it:

* :mod:`.problems` (errors as RFC 9457 documents), :mod:`.metrics`, :mod:`.state`
  (settings, API keys, application keys), :mod:`.bodies` (reading requests, cursors,
  pages), :mod:`.openapi` (the document's building blocks);
* one route module per resource, each with its OpenAPI fragment: :mod:`.events`,
  :mod:`.probes`, :mod:`.endpoints` (and :mod:`.endpoints_spec`), :mod:`.deliveries`,
  :mod:`.testsends`, :mod:`.catalogue`; seed 001's in :mod:`producer.tokens`;
* :mod:`.document` (the OpenAPI document) and :mod:`.app` (``create_app``), which
  nothing imports but the entry point.
"""
