"""A private Redis Cluster: primaries on free 127.0.0.1 ports, slots spread evenly.

Each node is a :class:`ClusterNodeServer` started and stopped by its own PID; the
cluster is formed with ``CLUSTER ADDSLOTSRANGE`` and ``CLUSTER MEET`` and is ready once
every node reports ``cluster_state:ok`` and knows all the others.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .polling import wait_until_sync
from .redis_server import ClusterNodeServer, RedisServerError

READY_TIMEOUT_S = 20.0


def command(port: int, *args: str | int) -> Any:
    """Send one command to the node on ``127.0.0.1:port`` (text replies)."""
    with redis.Redis(port=port, decode_responses=True, socket_timeout=5) as client:
        return client.execute_command(*args)


def slot_of(key: str) -> int:
    """The cluster slot of ``key`` (its hash tag's, if it has one)."""
    return int(key_slot(key.encode()))


class RedisClusterServers:
    """``primaries`` cluster nodes forming one cluster; ``close()`` stops them all.

    ``node_timeout_ms`` is how long a node may not answer before the others count it as
    failed (and its replica, if it has one, takes over); Redis's default is 15 s.
    """

    def __init__(
        self,
        directory: Path,
        primaries: int = 3,
        tls: tuple[Path, Path] | None = None,
        node_timeout_ms: int | None = None,
    ) -> None:
        self.directory = directory
        self.tls = tls
        self.extra_args = (
            ("--cluster-node-timeout", str(node_timeout_ms)) if node_timeout_ms else ()
        )
        self.nodes = [self._node(index) for index in range(primaries)]

    def _node(self, index: int) -> ClusterNodeServer:
        return ClusterNodeServer(self.directory / f"node{index}", self.tls, self.extra_args)

    @property
    def ports(self) -> list[int]:
        """Every node's port, in start order."""
        return [node.port for node in self.nodes]

    def start(self) -> None:
        """Start the nodes, give each an even share of the slots, join them, wait for ok."""
        try:
            for node in self.nodes:
                node.start()
            share = REDIS_CLUSTER_HASH_SLOTS // len(self.nodes)
            for index, node in enumerate(self.nodes):
                last = (
                    REDIS_CLUSTER_HASH_SLOTS - 1
                    if node is self.nodes[-1]
                    else (index + 1) * share - 1
                )
                command(node.port, "CLUSTER", "ADDSLOTSRANGE", index * share, last)
            for node in self.nodes[1:]:
                self._meet(node)
            wait_until_sync(
                self._ready, READY_TIMEOUT_S, interval=0.1, message="the cluster did not form"
            )
        except (AssertionError, RedisServerError, redis.RedisError):
            self.close()
            raise

    def _meet(self, node: ClusterNodeServer) -> None:
        first = self.nodes[0]
        command(
            node.port,
            "CLUSTER", "MEET", "127.0.0.1", first.tls_port or first.port, first.bus_port,
        )  # fmt: skip

    def add_replica(self, primary_port: int) -> ClusterNodeServer:
        """Start one more node and make it a replica of the primary on ``primary_port``.

        Returns once the replica has synchronised and every node knows its role.
        """
        node = self._node(len(self.nodes))
        self.nodes.append(node)
        node.start()
        self._meet(node)
        wait_until_sync(self._ready, READY_TIMEOUT_S, interval=0.1, message="the node did not join")
        primary_id = self.node_id(primary_port)
        command(node.port, "CLUSTER", "REPLICATE", primary_id)

        def replicating() -> bool:
            link = command(node.port, "INFO", "replication").get("master_link_status") == "up"
            replica_id = self.node_id(node.port)
            return link and all(
                any(replica_id in line for line in command(port, "CLUSTER", "REPLICAS", primary_id))
                for port in self.ports
                if port != node.port
            )

        wait_until_sync(
            replicating, READY_TIMEOUT_S, interval=0.1, message="the replica did not sync"
        )
        return node

    def node(self, port: int) -> ClusterNodeServer:
        """The node on ``port``."""
        return next(node for node in self.nodes if node.port == port)

    def _ready(self) -> bool:
        for port in self.ports:
            info = command(port, "CLUSTER", "INFO")
            if (
                "cluster_state:ok" not in info
                or f"cluster_known_nodes:{len(self.nodes)}" not in info
            ):
                return False
        return len({self.owner(0, asked=port) for port in self.ports}) == 1

    def node_id(self, port: int) -> str:
        """The cluster id of the node on ``port``."""
        return str(command(port, "CLUSTER", "MYID"))

    def owner(self, slot: int, asked: int | None = None) -> int:
        """The port of the primary that serves ``slot``, as the node on ``asked`` sees it."""
        for first, last, (_host, port, *_), *_replicas in command(
            asked or self.ports[0], "CLUSTER", "SLOTS"
        ):
            if first <= slot <= last:
                return int(port)
        raise RedisServerError(f"no node serves slot {slot}")

    def move_slot(self, slot: int, to_port: int) -> None:
        """Migrate ``slot`` and every key in it to the node on ``to_port``, as resharding does.

        Waits until every node agrees on the new owner.
        """
        source = self.owner(slot)
        target_id, source_id = self.node_id(to_port), self.node_id(source)
        command(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := command(source, "CLUSTER", "GETKEYSINSLOT", slot, 100):
            command(source, "MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
        for port in (to_port, source, *(p for p in self.ports if p not in (to_port, source))):
            command(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        wait_until_sync(
            lambda: all(self.owner(slot, asked=port) == to_port for port in self.ports),
            READY_TIMEOUT_S,
            interval=0.05,
            message=f"the nodes did not agree that slot {slot} moved",
        )

    def close(self) -> None:
        """Stop every node this object started."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServers:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
