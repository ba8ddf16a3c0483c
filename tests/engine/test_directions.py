import json

import pytest
import torch

from engine.directions import Annotation, Direction, DirectionSet, ParamBasis
from engine.errors import DirectionSetError


def make_set() -> DirectionSet:
    torch.manual_seed(0)
    W = torch.randn(6, 4, 3, 3)
    U, S, Vh = torch.linalg.svd(W.reshape(6, -1), full_matrices=False)
    basis = ParamBasis("main.3", "svd", tuple(W.shape), float(W.norm()), {"U": U, "S": S, "V": Vh.T})
    latent = [
        Direction("latent", vector=torch.randn(8), space="z", score=2.0, range=(-4, 4)),
        Direction("latent", vector=torch.randn(16), space="w+", layers=(2, 5), score=1.0),
    ]
    param = [
        Direction("param", layer="main.3", basis="svd", vector=torch.eye(6)[0], score=float(S[0])),
        Direction("param", layer="main.3", delta=torch.randn(6, 4, 3, 3), range=(-0.2, 0.2)),
    ]
    ds = DirectionSet(
        method="test",
        model={"name": "tiny", "identity": "ab" * 32},
        directions=latent + param,
        params={"k": 4},
        bases={"svd": basis},
        metrics={"rca": 0.5},
    )
    ds.directions[0].annotation = Annotation(
        name="smile", interpretable="yes", rating=4, notes="n", color="#ff0000", tags=["face"]
    )
    return ds


def test_roundtrip_keeps_everything(tmp_path):
    ds = make_set()
    path = ds.save(tmp_path / "set.json")
    back = DirectionSet.load(path)
    assert back.method == "test" and back.params == {"k": 4} and back.metrics == {"rca": 0.5}
    assert back.model["identity"] == "ab" * 32
    assert len(back) == 4
    for a, b in zip(ds.directions, back.directions):
        assert (a.kind, a.space, a.layers, a.layer, a.basis, a.score, a.range) == (
            b.kind,
            b.space,
            b.layers,
            b.layer,
            b.basis,
            b.score,
            b.range,
        )
        assert a.annotation == b.annotation
        for x, y in ((a.vector, b.vector), (a.delta, b.delta)):
            assert (x is None) == (y is None)
            if x is not None:
                torch.testing.assert_close(x, y)
    torch.testing.assert_close(back.param_delta(2), ds.param_delta(2))


def test_svd_basis_expands_to_a_singular_direction_with_the_weight_norm():
    ds = make_set()
    b = ds.bases["svd"]
    delta = ds.param_delta(2).reshape(6, -1)
    assert delta.norm().item() == pytest.approx(b.weight_norm, rel=1e-5)
    u0, v0 = b.tensors["U"][:, 0], b.tensors["V"][:, 0]
    torch.testing.assert_close(delta / delta.norm(), torch.outer(u0, v0) / torch.outer(u0, v0).norm())


def test_annotation_save_rewrites_only_the_manifest(tmp_path):
    ds = make_set()
    ds.save(tmp_path / "set.json")
    tensor_files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    before = (tmp_path / tensor_files[0]).stat().st_mtime_ns
    ds.directions[1].annotation.name = "pose"
    ds.directions[1].annotation.rating = 2
    ds.save_annotations()
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == tensor_files
    assert (tmp_path / tensor_files[0]).stat().st_mtime_ns == before
    back = DirectionSet.load(tmp_path / "set.json")
    assert back.directions[1].annotation.name == "pose" and back.directions[1].annotation.rating == 2


def test_resave_replaces_tensor_file_and_leaves_no_temporaries(tmp_path):
    ds = make_set()
    ds.save(tmp_path / "set.json")
    ds.directions[0].vector = ds.directions[0].vector * 2
    ds.save()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len([f for f in files if f.endswith(".safetensors")]) == 1
    assert not [f for f in files if f.endswith(".tmp")]
    torch.testing.assert_close(DirectionSet.load(tmp_path / "set.json").directions[0].vector, ds.directions[0].vector)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{ not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (json.dumps({"hello": 1}).encode(), "not a GAN Atlas direction set"),
        (json.dumps({"format": "gan-atlas-directions", "version": 99}).encode(), "version 99"),
        (
            json.dumps(
                {
                    "format": "gan-atlas-directions",
                    "version": 1,
                    "tensors": {"file": "x.safetensors"},
                    "method": "m",
                    "directions": [],
                }
            ).encode(),
            "missing",
        ),
    ],
)
def test_damaged_or_foreign_files_are_clear_errors(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(DirectionSetError, match=message) as info:
        DirectionSet.load(p)
    assert "bad" in str(info.value)


def test_damaged_tensor_file_and_bad_annotation_are_detected(tmp_path):
    ds = make_set()
    path = ds.save(tmp_path / "set.json")
    tfile = next(tmp_path.glob("*.safetensors"))
    blob = bytearray(tfile.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    tfile.write_bytes(bytes(blob))
    with pytest.raises(DirectionSetError, match="does not match"):
        DirectionSet.load(path)

    ds2 = make_set()
    path2 = ds2.save(tmp_path / "other.json")
    man = json.loads(path2.read_text())
    man["directions"][0]["annotation"]["rating"] = 9
    path2.write_text(json.dumps(man))
    with pytest.raises(DirectionSetError, match="rating"):
        DirectionSet.load(path2)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DirectionSetError, match="no such direction set"):
        DirectionSet.load(tmp_path / "nope.json")


def test_the_library_lists_sets_from_their_manifests_alone(tmp_path):
    """``library_sets`` (the editor's library listing) reads manifests through the loader's own
    checks: a set whose tensors are damaged is still listed (no tensors are read), files that are
    not sets this program can open are not (before, the browser parsed JSON itself and listed a
    manifest of a future version, or of any size)."""
    from engine.directions import MAX_MANIFEST_BYTES, library_sets, read_summary

    d = make_set()
    d.model = {"name": "tiny", "identity": "abc123", "source": "/models/tiny.pt"}
    path = d.save(tmp_path / "lib" / "model" / "one.json")
    next(path.parent.glob("one.*.safetensors")).write_bytes(b"garbage")  # tensors damaged: still listed
    (tmp_path / "lib" / "notes.json").write_text(json.dumps({"format": "something-else"}))
    future = json.loads(path.read_text())
    future["version"] = 99
    (tmp_path / "lib" / "future.json").write_text(json.dumps(future))
    big = tmp_path / "lib" / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)
    (tmp_path / "lib" / "broken.json").write_text("{")
    sets = library_sets(tmp_path / "lib")
    assert [s.path for s in sets] == [path]
    s = sets[0]
    assert (s.method, s.model_name, s.model_identity, s.model_source, s.count) == (
        d.method,
        "tiny",
        "abc123",
        "/models/tiny.pt",
        len(d),
    )
    assert read_summary(path.with_suffix("")) == s
    with pytest.raises(DirectionSetError, match="format version 99 is not supported"):
        read_summary(tmp_path / "lib" / "future.json")
    assert library_sets(tmp_path / "nowhere") == []
