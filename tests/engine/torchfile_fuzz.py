"""Hand-made ``torch.save`` files and seeded byte mutations, for the checkpoint-safety tests and bench.

``write_legacy(path, obj)`` writes the legacy stream container with any tensor records the test
wants, including ones ``torch.save`` would never write (a tensor larger than its storage, a
storage that claims more bytes than the file has). ``mutations(data, n, seed)`` yields ``n``
damaged copies of a file, concentrated on its pickles, where damage matters.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch

MAGIC = 0x1950A86A20F9469CFC6C


class FakeStorage:
    """Pickled as the persistent id of a float32 storage; ``data`` is written after the pickles."""

    def __init__(self, key: str, data: bytes, numel: int | None = None) -> None:
        self.key, self.data = key, data
        self.numel = len(data) // 4 if numel is None else numel


class FakeTensor:
    """Pickled as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage: FakeStorage, size, stride=None, offset: int = 0) -> None:
        if stride is None:
            stride = tuple(int(np.prod(size[i + 1 :])) for i in range(len(size)))
        self.args = (storage, offset, tuple(size), tuple(stride), False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def tensor(t: torch.Tensor, key: str) -> FakeTensor:
    """A real tensor as a FakeTensor with its own storage."""
    t = t.detach().float().contiguous()
    return FakeTensor(FakeStorage(key, t.numpy().tobytes()), tuple(t.shape))


class _Pickler(pickle.Pickler):
    def __init__(self, f, storages: list[FakeStorage]) -> None:
        super().__init__(f, protocol=2)
        self.storages = storages

    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            if obj not in self.storages:
                self.storages.append(obj)
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel, None)
        return None


def write_legacy(path, obj, patch=None) -> str:
    """Write ``obj`` (plain data and FakeTensors) in torch's legacy stream format.

    ``patch(bytes) -> bytes`` may rewrite the object pickle before it is written.
    """
    storages: list[FakeStorage] = []
    with open(path, "wb") as f:
        for head in (MAGIC, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}):
            pickle.dump(head, f, protocol=2)
        buf = io.BytesIO()
        _Pickler(buf, storages).dump(obj)
        f.write(patch(buf.getvalue()) if patch else buf.getvalue())
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.numel))
            f.write(s.data)
    return str(path)


def mutations(data: bytes, n: int, seed: int, *, hot: int) -> Iterator[tuple[str, bytes]]:
    """``n`` seeded ``(description, damaged bytes)`` copies of ``data``.

    ``hot``: how many leading bytes hold the structure (the pickles); most mutations land there.
    """
    rng = np.random.RandomState(seed)
    hot = max(1, min(hot, len(data)))
    for i in range(n):
        kind = rng.randint(7)
        b = bytearray(data)
        if kind <= 1:  # flip 1-4 bytes of the pickles
            pos = rng.randint(0, hot, size=rng.randint(1, 5))
            for p in pos:
                b[p] ^= 1 << rng.randint(8)
            desc = f"bit flips at {sorted(pos.tolist())}"
        elif kind == 2:  # random bytes over a run of the pickles
            p, k = rng.randint(hot), rng.randint(1, 17)
            b[p : p + k] = rng.randint(0, 256, size=len(b[p : p + k]), dtype=np.uint8).tobytes()
            desc = f"{k} random bytes at {p}"
        elif kind == 3:  # truncation anywhere
            p = rng.randint(len(b))
            del b[p:]
            desc = f"truncated to {p} bytes"
        elif kind == 4:  # insert or delete bytes in the pickles
            p, k = rng.randint(hot), rng.randint(1, 9)
            if rng.randint(2):
                b[p:p] = rng.randint(0, 256, size=k, dtype=np.uint8).tobytes()
                desc = f"{k} bytes inserted at {p}"
            else:
                del b[p : p + k]
                desc = f"{k} bytes deleted at {p}"
        elif kind == 5:  # the first storage's element count, just after the pickles
            p = hot + rng.randint(8)
            if p < len(b):
                b[p] = rng.randint(256)
            desc = f"storage count byte {p} changed"
        else:  # anywhere, mostly tensor data
            pos = rng.randint(0, len(b), size=rng.randint(1, 9))
            for p in pos:
                b[p] = rng.randint(256)
            desc = f"random bytes at {sorted(pos.tolist())}"
        yield f"#{i}: {desc}", bytes(b)
