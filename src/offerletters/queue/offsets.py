"""Which Kafka offsets are safe to commit while letters finish out of order.

A worker hands several groups of letters from one partition to the mailer at
once, and a slow letter can finish after later ones. The committed offset may
only pass a group when it and every group before it in that partition are
done; this tracker keeps that rule, and nothing else.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Partition = TypeVar("Partition", bound=Hashable)


@dataclass(eq=False)
class Ticket(Generic[Partition]):
    """One group of consecutive records of a partition, up to `next_offset`."""

    partition: Partition
    next_offset: int
    done: bool = False


@dataclass
class OffsetTracker(Generic[Partition]):
    """Groups in fetch order per partition, and the offsets they make committable."""

    _waiting: dict[Partition, deque[Ticket[Partition]]] = field(default_factory=dict)
    _ready: dict[Partition, int] = field(default_factory=dict)

    def add(self, partition: Partition, next_offset: int) -> Ticket[Partition]:
        """Track a new group; its records end just before `next_offset`."""
        ticket = Ticket(partition, next_offset)
        self._waiting.setdefault(partition, deque()).append(ticket)
        return ticket

    def finish(self, ticket: Ticket[Partition]) -> None:
        """Mark a group done and move its partition's offset past every done prefix."""
        ticket.done = True
        waiting = self._waiting.get(ticket.partition)
        while waiting and waiting[0].done:
            self._ready[ticket.partition] = waiting.popleft().next_offset

    def take_committable(self) -> dict[Partition, int]:
        """The offsets that moved since the last call, to commit now."""
        ready, self._ready = self._ready, {}
        return ready

    def unfinished(self, partitions: Iterable[Partition] | None = None) -> int:
        """How many groups are still open, in some partitions or in all."""
        chosen = self._waiting.keys() if partitions is None else partitions
        return sum(
            1 for p in chosen for ticket in self._waiting.get(p, ()) if not ticket.done
        )

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Drop partitions that moved to another worker, with anything left of them."""
        for partition in partitions:
            self._waiting.pop(partition, None)
            self._ready.pop(partition, None)
