"""``main.py weights``: the LPIPS backbone files (status, and download for users who are online)."""

from __future__ import annotations

from engine.errors import AtlasError


def register(sub) -> None:
    p = sub.add_parser(
        "weights",
        help="list or download the LPIPS backbone weights (torch hub cache)",
        description="LPIPS (the distance of param-spectrum) needs torchvision's ImageNet backbone "
        "files in the torch hub cache. 'status' lists them; 'download' fetches them "
        "(the only command that uses the network).",
    )
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    s = wsub.add_parser("status", help="which backbone files are present, and where")
    s.set_defaults(func=run_status)
    d = wsub.add_parser("download", help="download backbone files into the torch hub cache")
    d.add_argument(
        "--net",
        default="alex",
        choices=["alex", "vgg", "squeeze", "all"],
        help="which LPIPS backbone (default alex, the one param-spectrum uses by default)",
    )
    d.set_defaults(func=run_download)
    p.set_defaults(func=run_status)


def run_status(args) -> int:
    from engine.backbones import backbone_status, hub_checkpoint_dir  # no torch import

    print(f"torch hub cache: {hub_checkpoint_dir()}  (set TORCH_HOME to move it)")
    for b, present in backbone_status():
        state = "present" if present else "missing"
        print(f"  lpips-{b.net:<8} {b.filename:<32} {state}")
    print("  pixel          (needs no weights; mean squared pixel difference, not perceptual)")
    return 0


def run_download(args) -> int:
    from engine.distances import LPIPS_NETS, backbone, download_backbone

    nets = LPIPS_NETS if args.net == "all" else (args.net,)
    failed = []
    for net in nets:
        b = backbone(net)
        if b.present:
            print(f"lpips-{net}: {b.path} already present")
            continue
        print(f"lpips-{net}: downloading {b.url} -> {b.path}")
        try:
            path = download_backbone(net)
        except AtlasError as exc:
            failed.append(str(exc))
            continue
        print(f"lpips-{net}: wrote {path}")
    if failed:
        raise AtlasError(" | ".join(failed))
    return 0
