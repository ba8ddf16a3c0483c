"""``main.py info CHECKPOINT``: print the architecture inferred from a checkpoint.

Family, spaces, classes, capabilities (and, where a model can tell, why one is missing), the
editable layers, and the weight-bearing layers that are not editable with the reason.
"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="print the architecture inferred from a checkpoint or built-in model")
    p.add_argument("checkpoint", help="checkpoint file, adapter .py or built-in model name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.models import load_generator

    gen = load_generator(args.checkpoint, device="cpu")
    d = gen.describe()
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    names = d.pop("class_names", None)
    if names:
        shown = [f"{i} {n}" for i, n in enumerate(names[:4])]
        tail = f", ..., {len(names) - 1} {names[-1]}" if len(names) > 4 else ""
        d["classes"] = f"{len(names)}: " + ", ".join(shown) + tail
    special = ("editable_layers", "not_editable", "capability_notes")
    width = max(len(k) for k in d)
    for k, v in d.items():
        if k in special:
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items())
        elif isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v)) or "none"
        print(f"{k:<{width}}  {v}")
    for cap, note in d.get("capability_notes", {}).items():
        print(f"{'no ' + cap.replace('_', ' '):<{width}}  {note}")
    print("editable layers:" if d["editable_layers"] else "editable layers: none")
    for layer in d["editable_layers"]:
        mark = "  (default)" if layer["name"] == d.get("default_edit_layer") else ""
        shape = "x".join(map(str, layer["shape"]))
        res = f"{layer['resolution']:>4}px" if layer["resolution"] else "     -"
        reads = f"  reads ws[{layer['ws_index']}]" if "ws_index" in layer else ""
        if "reads" in layer:
            reads = f"  reads {layer['reads']}"
        print(f"  {layer['name']:<28} {layer['kind']:<15} {shape:<18} {res}{reads}{mark}")
    if d.get("not_editable"):
        print("not editable:")
        for layer in d["not_editable"]:
            print(f"  {layer['name']:<28} {layer['type']:<15} {layer['reason']}")
    return 0
