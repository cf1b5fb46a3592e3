"""`make widget`: the Kommo widget archive, ready to upload (docs/widget.md).

Reads the widget's source in `widget/` and writes, under `build/widget/` (git-ignored):

- `files/`: the archive's content unpacked (the local host page serves the widget from here);
- `widget.zip`: the same files at the archive's root, as Kommo wants them.

The manifest's `dp.webhook_url` is the deployment's `ApiUrl` + `/hooks/kommo/dp`: pass the
stack's `ApiUrl` output with `--api-url` (or `MAILER_API_URL`; `make widget API_URL=...`).
The logos are drawn here at Kommo's exact sizes (scripts/widget_logos.py). The build refuses
a source file that is not UTF-8 or starts with a byte order mark, and a JSON file that does
not parse, so a broken archive never reaches Kommo's upload form.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from widget_logos import write_logos  # the script's own folder, added above

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "widget"
OUT = ROOT / "build" / "widget"
PLACEHOLDER_API_URL = "https://mailer-api.example.invalid"
# What goes into the archive: everything else in widget/ (package.json, lint configs, types,
# node_modules, the host contract) is for development only.
SHIPPED_FILES = ("manifest.json", "script.js", "style.css")
SHIPPED_FOLDERS = ("templates", "i18n")
TEXT_SUFFIXES = {".json", ".js", ".css", ".twig"}
FIXED_TIME = (2026, 1, 1, 0, 0, 0)  # every entry's date, so two builds give the same bytes


class BuildError(Exception):
    pass


def _check_text(path: Path, source: Path) -> None:
    data = path.read_bytes()
    name = path.relative_to(source)
    if data.startswith(b"\xef\xbb\xbf"):
        raise BuildError(f"{name}: starts with a byte order mark; Kommo wants UTF-8 without BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BuildError(f"{name}: not UTF-8 ({exc})") from None
    if path.suffix == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise BuildError(f"{name}: not valid JSON ({exc})") from None


def _sources(source: Path) -> list[Path]:
    files = [source / name for name in SHIPPED_FILES]
    for folder in SHIPPED_FOLDERS:
        files += sorted(p for p in (source / folder).rglob("*") if p.is_file())
    return files


def manifest_for(source: Path, api_url: str) -> dict[str, object]:
    manifest: dict[str, object] = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    dp = manifest.get("dp")
    if isinstance(dp, dict):
        dp["webhook_url"] = api_url.rstrip("/") + "/hooks/kommo/dp"
    return manifest


def build(api_url: str, *, source: Path = SOURCE, out: Path = OUT) -> Path:
    """Write `out/files/` and `out/widget.zip`; return the zip's path."""
    files = _sources(source)
    for path in files:
        if not path.is_file():
            raise BuildError(f"{path.relative_to(source)}: missing")
        if path.suffix in TEXT_SUFFIXES:
            _check_text(path, source)
    staging = out / "files"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for path in files:
        target = staging / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name == "manifest.json" and path.parent == source:
            manifest = manifest_for(source, api_url)
            target.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            shutil.copyfile(path, target)
    write_logos(staging / "images")
    archive = out / "widget.zip"
    archive.unlink(missing_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--api-url",
        default=os.environ.get("MAILER_API_URL", ""),
        help="the stack's ApiUrl output (dp.webhook_url is built from it)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    api_url = args.api_url.strip()
    if not api_url:
        api_url = PLACEHOLDER_API_URL
        print(
            f"note: no --api-url (the stack's ApiUrl output): dp.webhook_url uses {api_url}; "
            "rebuild with `make widget API_URL=...` before uploading to Kommo",
            file=sys.stderr,
        )
    try:
        archive = build(api_url, out=args.out)
    except BuildError as exc:
        print(f"widget build failed: {exc}", file=sys.stderr)
        return 1
    print(f"widget archive: {archive}")
    print(f"unpacked files: {args.out / 'files'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
