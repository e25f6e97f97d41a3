"""The frames of the last examples, on disk before each is sent: what a crash leaves behind."""

from __future__ import annotations

import os
from collections.abc import Iterable


class Journal:
    """The frames of the last examples, written before each is sent: what a crash leaves.

    Two files take turns, ``every`` examples each, so the newest one or two blocks of
    examples survive the process and a replay can rebuild the state they made.
    """

    def __init__(self, directory: str, every: int = 200) -> None:
        self.directory = directory
        self.every = every
        self.count = 0
        self._fd = -1

    def paths(self) -> list[str]:
        return [os.path.join(self.directory, f"journal-{n}.txt") for n in (0, 1)]

    def example(self, client_tables: bool) -> None:
        if self.count % self.every == 0:
            if self._fd >= 0:
                os.close(self._fd)
            path = self.paths()[(self.count // self.every) % 2]
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.count += 1
        os.write(self._fd, f"E {self.count} {int(client_tables)}\n".encode())

    def frame(self, data: bytes) -> None:
        os.write(self._fd, b"F " + data.hex().encode() + b"\n")


def read_journal(paths: Iterable[str]) -> list[tuple[bool, list[bytes]]]:
    """The examples in journal files, oldest first."""
    examples: list[tuple[int, bool, list[bytes]]] = []
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path) as lines:
            for line in lines:
                tag, _, rest = line.rstrip("\n").partition(" ")
                if tag == "E":
                    number, flag = rest.split()
                    examples.append((int(number), flag == "1", []))
                elif tag == "F" and examples:
                    examples[-1][2].append(bytes.fromhex(rest))
    examples.sort(key=lambda e: e[0])
    return [(flag, frames) for _number, flag, frames in examples]
