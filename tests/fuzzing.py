"""Seeded byte-mutation fuzzing of file loaders: the harness, free of ``engine`` imports.

A ``FuzzFormat`` is a seed file (written by ``seed(folder)``, possibly among companion files, or
a folder) and the ``load(path)`` that reads it the way the app does. ``fuzz(fmt, folder, n, seed,
expected=(AtlasError,))`` writes the seed once, then for each of ``n`` cases writes a mutated copy
of the target file (``mutate``: bit flips, random and boundary bytes, 2/4/8-byte integers, deletions,
insertions, duplications, truncation), calls ``load`` and records the outcome:

* ``loaded`` - it loaded;
* ``refused`` - it raised one of ``expected`` (the project's one-line error);
* ``crashed`` - anything else (the traceback's last line is kept);
* ``slow`` - it took more than ``cpu_limit`` CPU seconds, or ``wall_limit`` wall seconds (a hang is
  interrupted there when the loader runs Python code).

CPU time (``time.process_time``) is what the 2 s contract is checked on: it does not grow when
other processes load the machine. ``tests/engine/test_fuzz_files.py`` runs a few hundred cases per
format in the suite; ``scripts/fuzz_files.py`` runs ten thousand and reports peak memory.

A new format plugs in with one line there: ``FuzzFormat("name", seed, load)``; ``target`` names the
file to mutate when it is not the loaded path (a set's tensor file, a file inside a model folder),
``fixup`` repairs what a careful writer would (e.g. a sha256 recorded beside it), ``hot``
returns byte ranges worth more mutations (e.g. a zip archive's ``data.pkl``) and ``mutator``
replaces the byte mutations (``json_mutate``: values of the wrong type, edge numbers, deletions).
"""

from __future__ import annotations

import copy
import random
import signal
import struct
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CPU_LIMIT = 2.0  # seconds per case: a hostile file is refused within 2 s
WALL_LIMIT = 30.0  # a generous deadline that still catches hangs on a loaded machine

_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)
_WIDE = (0, 1, -1, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**40, 2**62, 2**63 - 1)


@dataclass(frozen=True)
class FuzzFormat:
    """A file format to fuzz: how to write a seed, how to load, what to mutate (see the module doc)."""

    name: str
    seed: Callable[[Path], Path]
    load: Callable[[Path], object]
    target: Callable[[Path], Path] | None = None
    fixup: Callable[[Path, Path], None] | None = None
    hot: Callable[[bytes], Sequence[tuple[int, int]]] | None = None
    mutator: Callable[[bytes, random.Random], tuple[bytes, str]] | None = None


@dataclass
class Case:
    index: int
    mutation: str
    outcome: str
    cpu: float
    wall: float
    detail: str = ""


@dataclass
class Report:
    name: str
    cases: list[Case] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.cases)

    @property
    def failures(self) -> list[Case]:
        return [c for c in self.cases if c.outcome in ("crashed", "slow")]

    @property
    def max_cpu(self) -> float:
        return max((c.cpu for c in self.cases), default=0.0)

    @property
    def max_wall(self) -> float:
        return max((c.wall for c in self.cases), default=0.0)

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.cases)} cases, {self.count('loaded')} loaded, {self.count('refused')} refused, "
            f"{self.count('crashed')} crashed, {self.count('slow')} slow (max {self.max_cpu:.2f} s CPU, "
            f"{self.max_wall:.2f} s wall)"
        )

    def describe_failures(self, limit: int = 10) -> str:
        return "\n".join(f"  #{c.index} {c.mutation}: {c.outcome} {c.detail}" for c in self.failures[:limit])


# ---- mutations ----------------------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random, hot: Sequence[tuple[int, int]] = ()) -> tuple[bytes, str]:
    """One random mutation of ``data``: ``(new bytes, description)``. Half the positions fall in ``hot``."""
    buf = bytearray(data)
    n = len(buf)
    if n == 0:
        return bytes([rng.randrange(256)]), "insert into empty"

    def pos() -> int:
        spans = [(a, b) for a, b in hot if 0 <= a < b <= n]
        if spans and rng.random() < 0.5:
            a, b = rng.choice(spans)
            return rng.randrange(a, b)
        return rng.randrange(n)

    kind = rng.choice(("bit", "byte", "edge", "int", "delete", "insert", "duplicate", "truncate", "splice"))
    i = pos()
    if kind == "bit":
        bit = rng.randrange(8)
        buf[i] ^= 1 << bit
        return bytes(buf), f"flip bit {bit} of byte {i}"
    if kind == "byte":
        v = rng.randrange(256)
        buf[i] = v
        return bytes(buf), f"byte {i} = {v}"
    if kind == "edge":
        v = rng.choice(_INTERESTING)
        buf[i] = v
        return bytes(buf), f"byte {i} = {v}"
    if kind == "int":
        width = rng.choice((2, 4, 8))
        v = rng.choice(_WIDE) & ((1 << (8 * width)) - 1)
        chunk = v.to_bytes(width, rng.choice(("little", "big")))
        buf[i : i + width] = chunk
        return bytes(buf), f"{width}-byte int {v:#x} at {i}"
    if kind == "delete":
        k = rng.randint(1, 16)
        del buf[i : i + k]
        return bytes(buf), f"delete {k} bytes at {i}"
    if kind == "insert":
        k = rng.randint(1, 16)
        buf[i:i] = bytes(rng.randrange(256) for _ in range(k))
        return bytes(buf), f"insert {k} random bytes at {i}"
    if kind == "duplicate":
        k = rng.randint(1, 64)
        buf[i:i] = buf[i : i + k]
        return bytes(buf), f"duplicate {k} bytes at {i}"
    if kind == "truncate":
        return bytes(buf[:i]), f"truncate to {i} bytes"
    j, k = pos(), rng.randint(1, 32)
    buf[i : i + k] = data[j : j + k]
    return bytes(buf), f"copy {k} bytes from {j} to {i}"


_JSON_VALUES = (
    None,
    True,
    False,
    0,
    -1,
    1,
    7,
    2**31,
    2**63,
    10**400,
    0.5,
    -1e308,
    float("nan"),
    float("inf"),
    "",
    "x" * 300,
    "../x",
    "#zzzzzz",
    "w+",
    [],
    [1],
    [2, 1],
    [0.0, 1e9],
    [[1]],
    {},
    {"a": 1},
)


def json_mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A structure-aware mutation of a JSON document: one value replaced (by a wrong type, an edge
    number, a long or path-like string, a nesting), a key deleted, or a list item duplicated.
    Falls back to ``mutate`` when ``data`` is not JSON. Half of all calls mutate bytes instead."""
    import json

    try:
        doc = json.loads(data)
    except ValueError:
        return mutate(data, rng)
    if rng.random() < 0.5:
        return mutate(data, rng)
    slots: list[tuple[object, object]] = []  # (container, key) of every value
    stack = [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            slots.append((node, key))
            stack.append(value)
    if not slots:
        return mutate(data, rng)
    node, key = rng.choice(slots)
    action = rng.random()
    if action < 0.15 and isinstance(node, dict):
        del node[key]
        what = f"delete key {key!r}"
    elif action < 0.25 and isinstance(node, list):
        node.insert(key, node[key])
        what = f"duplicate item {key}"
    elif action < 0.35:
        other, okey = rng.choice(slots)
        node[key] = copy.deepcopy(other[okey])
        what = f"{key!r} = a copy of {okey!r}"
    else:
        value = copy.deepcopy(rng.choice(_JSON_VALUES))
        node[key] = value
        what = f"{key!r} = {str(value)[:20]}"
    return json.dumps(doc).encode(), what


def zip_member_ranges(data: bytes, suffixes: Sequence[str] = ("data.pkl",)) -> list[tuple[int, int]]:
    """Byte ranges of the zip members whose names end with one of ``suffixes`` (plus their headers),
    and of the central directory: the structure of a torch archive, worth more mutations."""
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        return []
    ranges = []
    for info in infos:
        if info.filename.endswith(tuple(suffixes)):
            start = info.header_offset
            ranges.append((start, min(len(data), start + 30 + len(info.filename) + 64 + info.compress_size)))
    last = max((i.header_offset for i in infos), default=0)
    ranges.append((min(len(data), last), len(data)))  # the last member, central directory, end record
    return ranges


def pickle_ranges(data: bytes) -> list[tuple[int, int]]:
    """The whole file: every byte of a small pickle is structure."""
    return [(0, len(data))]


def safetensors_header(data: bytes) -> list[tuple[int, int]]:
    """The length prefix and JSON header of a safetensors file."""
    if len(data) < 8:
        return []
    (n,) = struct.unpack("<Q", data[:8])
    return [(0, min(len(data), 8 + n))]


# ---- running -----------------------------------------------------------------------------------------


class Hang(Exception):
    """Raised in the loader by the wall-clock deadline."""


def _run(load: Callable[[Path], object], path: Path, expected: tuple[type[BaseException], ...], wall_limit: float):
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if use_alarm:

        def on_alarm(signum, frame):
            raise Hang(f"no answer within {wall_limit:.0f} s")

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, wall_limit)
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        try:
            load(path)
            outcome, detail = "loaded", ""
        except expected as exc:
            msg = str(exc)
            outcome, detail = ("refused", msg[:200]) if "\n" not in msg.strip() else ("crashed", "multi-line message")
        except Hang as exc:
            outcome, detail = "slow", str(exc)
        except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            outcome, detail = "crashed", f"{type(exc).__name__} at {where}: {str(exc)[:160]}"
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    return outcome, detail, time.process_time() - c0, time.perf_counter() - t0


def fuzz(
    fmt: FuzzFormat,
    folder: Path,
    n: int,
    seed: int,
    *,
    expected: tuple[type[BaseException], ...],
    cpu_limit: float = CPU_LIMIT,
    wall_limit: float = WALL_LIMIT,
    on_case: Callable[[Case], None] | None = None,
) -> Report:
    """Fuzz ``fmt`` with ``n`` seeded mutations in ``folder``; case 0 is the unmutated seed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = fmt.seed(folder)
    target = fmt.target(path) if fmt.target is not None else path
    original = target.read_bytes()
    hot = list(fmt.hot(original)) if fmt.hot is not None else []
    rng = random.Random(f"{fmt.name}/{seed}")
    report = Report(fmt.name)
    for index in range(n + 1):
        if index == 0:
            data, what = original, "unmutated seed"
        elif fmt.mutator is not None:
            data, what = fmt.mutator(original, rng)
        else:
            data, what = mutate(original, rng, hot)
        target.write_bytes(data)
        if fmt.fixup is not None:
            fmt.fixup(path, target)
        outcome, detail, cpu, wall = _run(fmt.load, path, expected, wall_limit)
        if outcome in ("loaded", "refused") and (cpu > cpu_limit or wall > wall_limit):
            outcome, detail = "slow", f"{cpu:.2f} s CPU, {wall:.2f} s wall"
        case = Case(index, what, outcome, cpu, wall, detail)
        report.cases.append(case)
        if on_case is not None:
            on_case(case)
    target.write_bytes(original)
    if fmt.fixup is not None:
        fmt.fixup(path, target)
    return report
