"""The delivery log's stores (:mod:`producer.store.logstore`): PostgreSQL for now.

The SQL schema lives in ``migrations/`` (applied by :mod:`producer.store.migrate`).
"""
