"""``vn3d avatar``: avatars from one portrait, and the avatar store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from engines.face.by_name import FACE_MODELS
from server.config import STORE_HELP
from vn3d.commands.common import add_landmarker_flag, load_model

if TYPE_CHECKING:
    from avatars.flame_avatar import FlameAvatarBuilder
    from engines.face.model import FaceModel


def cmd_avatar_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from avatars.builder import STAGES, AvatarBuilder, AvatarConfig, decode_photo
    from avatars.hair.styles import list_styles
    from avatars.identity_fit import FitConfig
    from avatars.store import AvatarStore
    from engines.files.assets import sha256_bytes

    if args.hair not in ("auto", "none", *list_styles()):
        raise ValueError(f"unknown hairstyle {args.hair!r}; use auto, none or one of: "
                         f"{', '.join(list_styles())}")
    data = Path(args.photo).read_bytes()
    image = decode_photo(data)
    model = load_model(args.model)
    if args.model == "flame":
        builder, stages = flame_builder(args, model)
    else:
        config = AvatarConfig(
            texture_size=args.texture_size, hair=args.hair, fit=FitConfig(fov_y_deg=args.fov),
            landmarker=args.landmarker,
        )
        builder, stages = AvatarBuilder(model, config), STAGES
    name = args.name or Path(args.photo).stem
    try:
        with tqdm(total=len(stages), desc="avatar", unit="stage") as bar:
            avatar = builder.build(image, name, sha256_bytes(data), lambda s: bar.update(1))
    finally:
        builder.close()
    store = AvatarStore(args.store)
    avatar_id = store.add(avatar, model)
    print(f"avatar {avatar_id} ({name}) in {store.root / avatar_id}")
    print(f"  hair: {avatar.hair.name if avatar.hair else 'none'}, "
          f"colour {tuple(round(c, 2) for c in avatar.hair_rgb)}; "
          f"landmark fit {avatar.photo.residual_px:.2f} px")
    for stage, ms in avatar.timings_ms.items():
        print(f"  {stage:<9} {ms:7.0f} ms")
    print(f"  total     {sum(avatar.timings_ms.values()):7.0f} ms")
    return 0


def flame_builder(args: argparse.Namespace, model: FaceModel
                  ) -> tuple[FlameAvatarBuilder, tuple[str, ...]]:
    """The FLAME avatar builder (DECA, MICA when found, FLAME's UVs) for ``avatar build
    --model flame``; FLAME heads have no strand hair here."""
    from avatars.flame_avatar import STAGES, FlameAvatarBuilder
    from engines.flame_encoders.photo_to_flame import load_photo_to_flame

    if args.hair not in ("auto", "none"):
        raise ValueError("FLAME avatars have no strand hair: leave out --hair (or use none)")
    reader, notes = load_photo_to_flame()
    for note in notes:
        print(f"note: {note}")
    return FlameAvatarBuilder(model, reader, args.texture, args.landmarker), STAGES


def cmd_avatar_list(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    entries = AvatarStore(args.store).entries(everyone=True)
    for e in entries:
        owner = "local" if e.owner is None else ("public" if e.public else "private upload")
        print(f"{e.id}  {e.name:<24} hair={e.hairstyle or 'none':<14} {owner}")
    if not entries:
        print("no avatars yet: vn3d avatar build PHOTO")
    return 0


def cmd_avatar_show(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    store = AvatarStore(args.store)
    folder = store.folder(args.id)
    print((folder / "manifest.json").read_text())
    return 0


def cmd_avatar_export(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    store = AvatarStore(args.store)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = store.entry(args.id).name
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or args.id
    (out / f"{stem}.zip").write_bytes(store.zip(args.id))
    (out / f"{stem}.glb").write_bytes(store.glb(args.id))
    print(f"wrote {out / (stem + '.zip')} and {out / (stem + '.glb')}")
    return 0


def cmd_avatar_import(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    avatar_id = AvatarStore(args.store).import_avatar(Path(args.source), load_model(args.model))
    print(f"imported avatar {avatar_id}")
    return 0


def cmd_avatar_delete(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    AvatarStore(args.store).delete(args.id)
    print(f"deleted avatar {args.id}")
    return 0



def cmd_avatar_restyle(args: argparse.Namespace) -> int:
    from avatars.restyle import parse_colour, restyle_avatar
    from avatars.store import AvatarStore

    store = AvatarStore(args.store)
    model = load_model("ict")
    entry = store.entry(args.id)
    try:
        colour = parse_colour(args.colour) if args.colour else None
        avatar = restyle_avatar(store.load(args.id, model), model, args.hair, colour)
    except ValueError as exc:
        raise SystemExit(f"vn3d avatar restyle: {exc}") from None
    new_id = store.add(avatar, model, entry.owner, entry.public)
    hair = avatar.hair.name if avatar.hair is not None else "no hair"
    print(f"avatar {new_id}: {avatar.name} with {hair} in "
          f"#{''.join(f'{round(c * 255):02x}' for c in avatar.hair_rgb)} "
          f"({args.id} is kept)")
    return 0


def list_hairstyles(args: argparse.Namespace) -> int:
    from avatars.hair.styles import list_styles

    if not args.pictures:
        print("\n".join(list_styles()))
        return 0
    from tqdm import tqdm

    from avatars.hair.thumbnails import StyleThumbnails

    pictures = StyleThumbnails(load_model("ict"))
    missing = [n for n in list_styles() if not pictures.on_disk(n)]
    for name in tqdm(missing, desc="hairstyle pictures", unit="style"):
        pictures.make(name)
    print(f"{len(list_styles())} hairstyle pictures ready ({len(missing)} made now) for the "
          "page's hair picker")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    avatar = sub.add_parser("avatar", help="avatars from portraits, and the avatar store")
    avatar_sub = avatar.add_subparsers(dest="avatar_command", required=True)
    p = avatar_sub.add_parser("build", help="build an avatar from one portrait into the store")
    p.add_argument("photo", help="a JPEG, PNG or WebP portrait")
    p.add_argument("--hair", default="auto", help="'auto' (chosen from the photo), a style "
                   "name (see `vn3d avatar styles`) or 'none'")
    p.add_argument("--name", default=None, help="display name (default: the file name)")
    p.add_argument("--texture-size", type=int, default=1024)
    p.add_argument("--fov", type=float, default=20.0, help="the photo's vertical field of "
                   "view in degrees (portraits ~20, phone/webcam selfies ~50)")
    p.add_argument("--model", choices=FACE_MODELS, default="ict", help="ict (the open "
                   "default) or flame (MICA's shape, DECA's albedo or the photo's texture on "
                   "FLAME's UVs; needs the registered files: vn3d doctor)")
    p.add_argument("--texture", choices=["auto", "albedo", "photo"], default="auto",
                   help="--model flame: DECA's albedo, or the photo unwrapped onto FLAME's "
                   "UVs (auto: the albedo if its model is there, else the photo)")
    p.add_argument("--store", default=None, help=STORE_HELP)
    add_landmarker_flag(p)
    p.set_defaults(func=cmd_avatar_build)
    p = avatar_sub.add_parser("styles", help="list the hairstyles")
    p.add_argument("--pictures", action="store_true", help="make the page's picture of "
                   "each style now (once per machine; make run does it)")
    p.set_defaults(func=list_hairstyles)
    p = avatar_sub.add_parser("restyle", help="try another hairstyle or hair colour: a new "
                              "avatar (the old one is kept)")
    p.add_argument("id", help="the avatar's id (vn3d avatar list)")
    p.add_argument("--hair", default=None, help="a style name (vn3d avatar styles) or 'none'")
    p.add_argument("--colour", default=None, help="hair colour as #RRGGBB")
    p.add_argument("--store", default=None, help=STORE_HELP)
    p.set_defaults(func=cmd_avatar_restyle)
    for verb, helptext, func in (
        ("list", "list the avatars in the store", cmd_avatar_list),
        ("show", "print an avatar's manifest", cmd_avatar_show),
        ("export", "write an avatar's zip and GLB", cmd_avatar_export),
        ("delete", "delete an avatar from the store", cmd_avatar_delete),
        ("import", "import an avatar folder or zip into the store", cmd_avatar_import),
    ):
        p = avatar_sub.add_parser(verb, help=helptext)
        if verb == "import":
            p.add_argument("source", help="an avatar folder or .zip")
            p.add_argument("--model", choices=FACE_MODELS, default="ict",
                           help="the face model the avatar is for")
        elif verb != "list":
            p.add_argument("id", help="the avatar's id (vn3d avatar list)")
        if verb == "export":
            p.add_argument("--out", default="out/avatars")
        p.add_argument("--store", default=None, help=STORE_HELP)
        p.set_defaults(func=func)
