"""Test harness: a private Redis and PostgreSQL, real HTTP/SMTP receivers, the seed's Node receiver.

Fixtures wrapping these live in ``tests/conftest.py``.
"""

from __future__ import annotations

from .factories import NodeReceiverFactory, ReceiverFactory, RedisServerFactory
from .node_receiver import NodeReceiver, NodeReceiverUnavailable
from .polling import wait_until, wait_until_sync
from .postgres import PostgresServer, PostgresServerError
from .receiver import HANG, ReceivedRequest, Receiver, ScriptedResponse
from .redis_server import RedisServer, RedisServerError
from .smtp import CapturedMessage, SmtpServer

__all__ = [
    "HANG",
    "CapturedMessage",
    "NodeReceiver",
    "NodeReceiverFactory",
    "NodeReceiverUnavailable",
    "PostgresServer",
    "PostgresServerError",
    "ReceivedRequest",
    "Receiver",
    "ReceiverFactory",
    "RedisServer",
    "RedisServerError",
    "RedisServerFactory",
    "ScriptedResponse",
    "SmtpServer",
    "wait_until",
    "wait_until_sync",
]
