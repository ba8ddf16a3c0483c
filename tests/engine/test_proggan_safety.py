"""Damaged and hostile ProGAN files: one clear line naming the file, no code run, memory bounded."""

from __future__ import annotations

import os
import pickletools
import struct
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from cli.main import main
from engine.checkpoints.proggan import load_proggan
from engine.checkpoints.torchfile import read_torch_file
from engine.errors import AtlasError, CheckpointError, UnsafePickleError
from engine.models import load_generator
from engine.models.base import Generator
from tests.conftest import require_fixtures
from tests.engine.torchfile_fuzz import FakeStorage, FakeTensor, mutations, tensor, write_legacy

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "proggan"
ND = FIXTURES / "proggan_netdissect_res32.pth"
GLD = FIXTURES / "proggan_gld_res32.pth"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True, scope="module")
def proggan_fixtures():
    """The ProGAN fixtures: skip without them, fail under CI (see tests/conftest.py)."""
    return require_fixtures(FIXTURES)


def netdissect_records() -> OrderedDict:
    """The netdissect fixture as FakeTensor records (to be edited and written by write_legacy)."""
    sd = torch.load(ND, weights_only=True)
    return OrderedDict((k, tensor(v, str(i))) for i, (k, v) in enumerate(sd.items()))


def _rename(sd: OrderedDict, old: str, new: str) -> None:
    for k in [k for k in sd if k.startswith(old + ".")]:
        sd[new + k[len(old) :]] = sd.pop(k)


def one_line_cli_error(path: str, capsys) -> str:
    assert main(["info", path]) == 1  # a file problem (2 is for a bad command line)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and Path(path).name in err[0], err
    return err[0]


def test_truncated_file_is_one_line_naming_it(tmp_path, capsys):
    data = GLD.read_bytes()
    for cut in (len(data) // 2, 3000, 40):
        bad = tmp_path / f"cut{cut}.pth"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"cut{cut}.pth"):
            load_proggan(bad)
        one_line_cli_error(str(bad), capsys)
    assert "truncated" in str(pytest.raises(CheckpointError, load_proggan, tmp_path / f"cut{len(data) // 2}.pth").value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.update({7: sd.pop("layer2.wscale.b")}), "a key of type int"),
        (lambda sd: sd.update({"layer2.wscale.b": "hello"}), "'layer2.wscale.b' is a str, not a tensor"),
        (lambda sd: [sd.pop("layer3.conv.weight"), sd.pop("layer3.wscale.b")], "missing layer3.conv.weight"),
        (lambda sd: sd.pop("layer5.wscale.b"), "missing layer5.wscale.b"),
        (lambda sd: sd.update({"layer10.extra": tensor(torch.zeros(1), "x")}), "missing layer9.conv.weight"),
        (lambda sd: sd.update({"mystery": tensor(torch.zeros(1), "x")}), "unexpected keys .*mystery"),
        (lambda sd: sd.update({"layer4.conv.weight": tensor(torch.zeros(32, 31, 3, 3), "x")}), r"expected \[32, 32"),
        (lambda sd: sd.update({"layer2.wscale.b": tensor(torch.zeros(5), "x")}), r"wscale.b has shape \[5\]"),
        (lambda sd: sd.update({"layer1.conv.weight": tensor(torch.full((32, 512, 4, 4), float("nan")), "x")}), "NaN"),
        (lambda sd: _rename(sd, "output_32x32", "output_64x64"), "output_64x64 names 64px"),
        (lambda sd: sd.clear(), "no ProGAN generator weights"),
    ],
    ids=[
        "int-key",
        "str-value",
        "missing-layer",
        "missing-bias",
        "gap",
        "extra-key",
        "bad-shape",
        "bad-bias",
        "nan",
        "wrong-res",
        "empty",
    ],
)
def test_malformed_state_dicts_are_one_clear_line(tmp_path, capsys, edit, message):
    sd = netdissect_records()
    edit(sd)
    path = write_legacy(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError, match=message) as info:
        load_proggan(path)
    assert str(info.value).startswith(path) and "\n" not in str(info.value)
    one_line_cli_error(path, capsys)  # an empty dict is no format's file: "not recognised", still one line


def test_huge_declared_shapes_are_refused_before_allocating(tmp_path):
    sd = netdissect_records()
    # a storage claiming 2^40 floats (4 TiB) in a file of one megabyte
    sd["layer1.conv.weight"] = FakeTensor(FakeStorage("big", b"\0" * 64, numel=1 << 40), (32, 512, 4, 4))
    path = write_legacy(tmp_path / "big.pth", sd)
    with pytest.raises(CheckpointError, match="big.pth: truncated: storage big needs"):
        read_torch_file(path)
    # a tensor of 2^40 elements viewing 16 floats through zero strides
    sd = netdissect_records()
    sd["layer1.conv.weight"] = FakeTensor(FakeStorage("s", b"\0" * 64), (1 << 20, 1 << 20), stride=(0, 0))
    path = write_legacy(tmp_path / "strided.pth", sd)
    with pytest.raises(CheckpointError, match="strided.pth: .*larger than its storage"):
        read_torch_file(path)
    # many tensors sharing one storage, together far larger than the file
    shared = FakeStorage("one", b"\0" * 4 * 4096)
    path = write_legacy(tmp_path / "shared.pth", {f"t{i}": FakeTensor(shared, (4096,)) for i in range(1000)})
    with pytest.raises(CheckpointError, match="more elements than the file holds"):
        read_torch_file(path)
    # a tensor reaching past its storage
    sd = {"t": FakeTensor(FakeStorage("s", b"\0" * 64), (4, 4), offset=8)}
    with pytest.raises(CheckpointError, match="reaching past its storage"):
        read_torch_file(write_legacy(tmp_path / "past.pth", sd))


def test_a_huge_memo_index_costs_no_memory(tmp_path):
    """``LONG_BINPUT 2**31 - 1`` makes CPython's C unpickler allocate a 16 GB memo; ours refuses the
    index (no pickle writer numbers its memo out of sequence) before unpickling anything.

    Checked in a child process whose address space is capped at 8 GB, where that allocation fails.
    """
    sd = dict(torch.load(ND, weights_only=True))
    records = {k: tensor(v, str(i)) for i, (k, v) in enumerate(sd.items())}

    def bomb(pkl: bytes) -> bytes:
        assert pkl.startswith(b"\x80\x02}q\x00")  # PROTO 2, EMPTY_DICT, BINPUT 0 (never read back)
        return b"\x80\x02}r" + struct.pack("<I", 2**31 - 1) + pkl[5:]

    path = write_legacy(tmp_path / "memo.pth", records, patch=bomb)
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))\n"
        "from engine.checkpoints.proggan import load_proggan\n"
        "from engine.errors import CheckpointError\n"
        "try:\n"
        f"    load_proggan({path!r})\n"
        "except CheckpointError as exc:\n"
        "    print(exc)\n"
    )
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert r.returncode == 0, r.stderr[-500:]
    assert "memo.pth" in r.stdout and "memo index 2147483647 out of sequence" in r.stdout, r.stdout


class _Call:
    """Pickles as a call of ``func(*args)``: what a hostile file would contain."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("zip_container", [False, True])
def test_code_in_the_file_is_refused_and_never_runs(tmp_path, zip_container):
    sentinel = tmp_path / "SENTINEL"
    sd = OrderedDict(torch.load(ND, weights_only=True))
    sd["layer1.wscale.b"] = _Call(os.system, f"touch {sentinel}")
    path = tmp_path / "evil.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=zip_container)
    with pytest.raises(UnsafePickleError, match="evil.pth: refused to load: .*'posix.system'"):
        load_proggan(path)
    with pytest.raises(AtlasError, match="evil.pth"):
        load_generator(str(path), device="cpu")
    assert not sentinel.exists()


def test_compressed_zip_records_are_refused(tmp_path):
    import zipfile

    src = tmp_path / "plain.pth"
    torch.save(torch.load(ND, weights_only=True), src)
    dst = tmp_path / "deflated.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    with pytest.raises(CheckpointError, match="deflated.pth: .*compressed"):
        load_proggan(dst)


def pickles_end(data: bytes, count: int = 5) -> int:
    """Offset just past the legacy stream's ``count`` pickles."""
    pos = 0
    for _ in range(count):
        for _op, _arg, at in pickletools.genops(data[pos:]):
            last = at
        pos += last + 1
    return pos


@pytest.mark.parametrize("container", ["legacy", "zip"])
def test_fuzzed_files_load_or_give_an_atlas_error(tmp_path, container):
    """A seeded few hundred byte mutations: each is a generator or an AtlasError, never anything else.

    (The time each takes is measured by bench/bench_checkpoint_fuzz.py, not here.)
    """
    if container == "legacy":
        data, n, hot = GLD.read_bytes(), 300, pickles_end(GLD.read_bytes())
    else:
        torch.save(torch.load(GLD, weights_only=True), tmp_path / "zip.pth")
        data, n, hot = (tmp_path / "zip.pth").read_bytes(), 100, 4096
    path = tmp_path / "fuzzed.pth"
    outcomes = {"loaded": 0, "refused": 0}
    for desc, blob in mutations(data, n, seed=10 if container == "legacy" else 11, hot=hot):
        path.write_bytes(blob)
        try:
            gen = load_generator(str(path), device="cpu")
        except AtlasError as exc:
            msg = str(exc)
            assert "fuzzed.pth" in msg and "\n" not in msg, (desc, msg)
            outcomes["refused"] += 1
        except BaseException as exc:  # noqa: BLE001 - the point: nothing else may come out
            pytest.fail(f"{container} {desc}: {exc.__class__.__name__}: {exc}")
        else:
            assert isinstance(gen, Generator)
            outcomes["loaded"] += 1
    # both outcomes occur: the mutations reach the structure and the data
    assert outcomes["loaded"] > 5 and outcomes["refused"] > n // 3, outcomes
