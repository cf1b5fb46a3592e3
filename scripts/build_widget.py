"""`make widget`: the Kommo widget archive, ready to upload (docs/widget.md).

Reads the widget's source in `widget/` and writes, under `build/widget/` (git-ignored):

- `files/`: the archive's content unpacked (the local host page serves the widget from here);
- `widget.zip`: the same files at the archive's root, as Kommo wants them.

The manifest's `dp.webhook_url` is the deployment's `ApiUrl` + `/hooks/kommo/dp`: pass the
stack's `ApiUrl` output with `--api-url` (or `MAILER_API_URL`; `make widget API_URL=...`).
The manifest's `widget.support` (the link and e-mail Kommo shows for help, required by its
marketplace) comes from `--support-link` and `--support-email` (`MAILER_SUPPORT_LINK`,
`MAILER_SUPPORT_EMAIL`; `make widget SUPPORT_LINK=... SUPPORT_EMAIL=...`); without them the
manifest keeps placeholders under the reserved `.invalid` domain and the build says so.
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
# widget/manifest.json carries these: nobody's real address, so an upload never points at one.
PLACEHOLDER_SUPPORT_LINK = "https://support.mailer.example.invalid/"
PLACEHOLDER_SUPPORT_EMAIL = "support@mailer.example.invalid"
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


def _checked_support(link: str | None, email: str | None) -> None:
    if link is not None and (not link.startswith("https://") or len(link) <= len("https://") or " " in link):
        raise BuildError(f"support link {link!r}: Kommo wants an https:// address")
    if email is not None:
        local, _, domain = email.partition("@")
        if not local or "." not in domain or " " in email:
            raise BuildError(f"support e-mail {email!r}: not an e-mail address")


def manifest_for(
    source: Path, api_url: str, *, support_link: str | None = None, support_email: str | None = None
) -> dict[str, object]:
    manifest: dict[str, object] = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    dp = manifest.get("dp")
    if isinstance(dp, dict):
        dp["webhook_url"] = api_url.rstrip("/") + "/hooks/kommo/dp"
    widget = manifest.get("widget")
    if isinstance(widget, dict) and (support_link or support_email):
        support = dict(widget.get("support") or {})
        if support_link:
            support["link"] = support_link
        if support_email:
            support["email"] = support_email
        widget["support"] = support
    return manifest


def build(
    api_url: str,
    *,
    source: Path = SOURCE,
    out: Path = OUT,
    support_link: str | None = None,
    support_email: str | None = None,
) -> Path:
    """Write `out/files/` and `out/widget.zip`; return the zip's path. `support_link` and
    `support_email` replace the manifest's placeholders of `widget.support`."""
    _checked_support(support_link, support_email)
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
            manifest = manifest_for(source, api_url, support_link=support_link, support_email=support_email)
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
    parser.add_argument(
        "--support-link",
        default=os.environ.get("MAILER_SUPPORT_LINK", ""),
        help="the https:// page Kommo shows for help with the widget (widget.support.link)",
    )
    parser.add_argument(
        "--support-email",
        default=os.environ.get("MAILER_SUPPORT_EMAIL", ""),
        help="the e-mail address Kommo shows for help with the widget (widget.support.email)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    support_link = args.support_link.strip() or None
    support_email = args.support_email.strip() or None
    if support_link is None or support_email is None:
        print(
            "note: no support link or e-mail: the manifest's widget.support keeps the placeholders "
            f"{PLACEHOLDER_SUPPORT_LINK} and {PLACEHOLDER_SUPPORT_EMAIL}; rebuild with "
            "`make widget SUPPORT_LINK=https://... SUPPORT_EMAIL=...` before uploading to Kommo",
            file=sys.stderr,
        )
    api_url = args.api_url.strip()
    if not api_url:
        api_url = PLACEHOLDER_API_URL
        print(
            f"note: no --api-url (the stack's ApiUrl output): dp.webhook_url uses {api_url}; "
            "rebuild with `make widget API_URL=...` before uploading to Kommo",
            file=sys.stderr,
        )
    try:
        archive = build(api_url, out=args.out, support_link=support_link, support_email=support_email)
    except BuildError as exc:
        print(f"widget build failed: {exc}", file=sys.stderr)
        return 1
    print(f"widget archive: {archive}")
    print(f"unpacked files: {args.out / 'files'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
