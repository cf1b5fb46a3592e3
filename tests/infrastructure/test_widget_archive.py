"""The widget archive `make widget` builds obeys Kommo's rules for an upload
(docs/widget.md; ../shared/reference/kommo-widget.md §1, §2, §12): files at the root, UTF-8
without BOM, the manifest's fields and locations, every i18n key in every locale, logos at
their exact sizes, no minified own code, and script.js a RequireJS module with Kommo's
callbacks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.build_widget import (
    PLACEHOLDER_SUPPORT_EMAIL,
    PLACEHOLDER_SUPPORT_LINK,
    SOURCE,
    BuildError,
    build,
)
from scripts.widget_logos import LOGO_SIZES, png_size

API_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com"
KOMMO_LOCALES = {"en", "es", "pt", "tr", "id"}  # §1.2: what Kommo offers; ru for amoCRM
LOCATIONS = {
    "lcard-1",
    "ccard-1",
    "comcard-1",
    "llist-1",
    "clist-1",
    "settings",
    "advanced_settings",
    "digital_pipeline",
    "salesbot_designer",
}
CALLBACKS = {
    "render",
    "init",
    "bind_actions",
    "settings",
    "onSave",
    "destroy",
    "advancedSettings",
    "dpSettings",
    "salesbotDesignerSettings",
    "onSalesbotDesignerSave",
    "leads.selected",
    "contacts.selected",
}
MAX_IMAGE_BYTES = 300 * 1024


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    path = build(API_URL, out=tmp_path_factory.mktemp("widget"))
    with zipfile.ZipFile(path) as zf:
        yield zf


def _json(zf: zipfile.ZipFile, name: str) -> Any:
    return json.loads(zf.read(name).decode("utf-8"))


def _keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in tree.items():
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _lookup(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_the_files_sit_at_the_archive_root(archive: zipfile.ZipFile) -> None:
    names = archive.namelist()
    assert {"manifest.json", "script.js", "style.css"} <= set(names)
    top = {name.split("/")[0] for name in names}
    assert top == {"manifest.json", "script.js", "style.css", "i18n", "images", "templates"}
    assert not [n for n in names if "node_modules" in n or n.endswith((".md", ".ts")) or "package" in n]


def test_every_text_file_is_utf8_without_bom(archive: zipfile.ZipFile) -> None:
    for name in archive.namelist():
        if name.endswith((".json", ".js", ".css", ".twig")):
            data = archive.read(name)
            assert not data.startswith(b"\xef\xbb\xbf"), name
            data.decode("utf-8")


def test_the_manifest_has_kommos_fields(archive: zipfile.ZipFile) -> None:
    manifest = _json(archive, "manifest.json")
    widget = manifest["widget"]
    assert widget["interface_version"] == 2
    assert widget["installation"] is True
    assert isinstance(widget["init_once"], bool)
    assert re.fullmatch(r"\d+\.\d+\.\d+", widget["version"])
    assert widget["support"]["link"].startswith("https://") and "@" in widget["support"]["email"]
    assert set(manifest["locations"]) == LOCATIONS
    assert set(widget["locale"]) == KOMMO_LOCALES | {"ru"}
    assert manifest["settings"]["api_url"] == {"name": "settings.api_url", "type": "text", "required": True}
    assert manifest["advanced"]["title"]


def test_the_pipeline_block_posts_to_the_stacks_hook(archive: zipfile.ZipFile) -> None:
    dp = _json(archive, "manifest.json")["dp"]
    assert dp["webhook_url"] == API_URL + "/hooks/kommo/dp"
    assert dp["action_multiple"] is False
    # The hook's settings (docs/kommo-setup.md): the template and the secret are required.
    assert set(dp["settings"]) == {"template_id", "mailbox_id", "to", "delay", "secret"}
    assert {k for k, v in dp["settings"].items() if v["required"]} == {"template_id", "secret"}


def test_the_salesbot_block_names_the_steps_settings(archive: zipfile.ZipFile) -> None:
    block = _json(archive, "manifest.json")["salesbot_designer"]
    handler = block["send_template"]
    assert set(handler["settings"]) == {"template_id", "mailbox_id", "to", "delay"}
    assert all(s["type"] in {"text", "numeric", "url"} for s in handler["settings"].values())


def test_each_locale_has_a_file_with_every_key(archive: zipfile.ZipFile) -> None:
    locales = _json(archive, "manifest.json")["widget"]["locale"]
    files = {
        n.removeprefix("i18n/").removesuffix(".json") for n in archive.namelist() if n.startswith("i18n/")
    }
    assert files == set(locales)
    english = _keys(_json(archive, "i18n/en.json"))
    for locale in locales:
        texts = _json(archive, f"i18n/{locale}.json")
        assert _keys(texts) == english, locale
        assert all(isinstance(_lookup(texts, k), str) and _lookup(texts, k).strip() for k in english), locale


def test_the_manifests_i18n_names_exist(archive: zipfile.ZipFile) -> None:
    manifest = _json(archive, "manifest.json")
    names = [manifest["widget"][k] for k in ("name", "description", "short_description")]
    names.append(manifest["advanced"]["title"])
    names += [f["name"] for f in manifest["settings"].values()]
    names += [f["name"] for f in manifest["dp"]["settings"].values()]
    for handler in (v for v in manifest["salesbot_designer"].values() if isinstance(v, dict)):
        names.append(handler["name"])
        names += [f["name"] for f in handler["settings"].values()]
    english = _json(archive, "i18n/en.json")
    assert [n for n in names if not isinstance(_lookup(english, n), str)] == []


def test_the_texts_the_script_and_templates_use_exist(archive: zipfile.ZipFile) -> None:
    english = _json(archive, "i18n/en.json")
    script = archive.read("script.js").decode("utf-8")
    used = set(re.findall(r"\bt\('([a-z_]+\.[a-z_.]*[a-z_])'", script))
    for name in (n for n in archive.namelist() if n.endswith(".twig")):
        used |= set(re.findall(r"i18n\.([a-z_]+\.[a-z_.]+)", archive.read(name).decode("utf-8")))
    assert used, "found no texts"
    assert sorted(k for k in used if not isinstance(_lookup(english, k), str)) == []


def test_the_logos_have_kommos_exact_sizes(archive: zipfile.ZipFile) -> None:
    images = {
        n.removeprefix("images/"): archive.read(n) for n in archive.namelist() if n.startswith("images/")
    }
    assert set(images) == set(LOGO_SIZES)
    assert {name: png_size(data) for name, data in images.items()} == LOGO_SIZES
    assert LOGO_SIZES["logo_dp.png"] == (174, 109) and LOGO_SIZES["logo_min.png"] == (84, 84)
    assert all(len(data) <= MAX_IMAGE_BYTES for data in images.values())


def test_no_own_code_is_minified(archive: zipfile.ZipFile) -> None:
    """Kommo refuses minified or obfuscated code in public integrations (§12)."""
    for name in ("script.js", "style.css"):
        lines = archive.read(name).decode("utf-8").splitlines()
        assert len(lines) > 100, name
        assert max(len(line) for line in lines) <= 180, name
        assert sum(len(line) for line in lines) / len(lines) < 80, name
        text = "\n".join(lines)
        assert "sourceMappingURL" not in text and "eval(" not in text, name
        # Mangled one-letter names (a, b, e …) for most parameters are a minifier's mark.
        params = [
            p.strip() for group in re.findall(r"function\s*\w*\(([^)]*)\)", text) for p in group.split(",")
        ]
        params = [p for p in params if p]
        short = [p for p in params if len(p) == 1 and p != "$"]
        assert len(short) <= len(params) / 10, (name, short)


def test_script_is_a_requirejs_module_with_kommos_callbacks(archive: zipfile.ZipFile) -> None:
    script = archive.read("script.js").decode("utf-8")
    body = re.sub(r"/\*.*?\*/", "", script, count=1, flags=re.S).strip()
    assert re.match(r"define\(\[\s*'jquery'", body)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the callbacks are checked by running the module")
    runner = """
const fs = require('fs');
let deps, factory;
global.window = global; global.define = (d, f) => { deps = d; factory = f; };
eval(fs.readFileSync(0, 'utf8'));
const Ctor = factory(function () {}, function Modal() {});
const self = Object.create({
  get_settings: () => ({ widget_code: 'mailer', api_url: 'https://api.example/' }),
  system: () => ({ area: 'salesbot_designer' }), i18n: () => ({}), langs: {}, params: { path: '/w' },
});
const widget = Ctor.call(self) || self;
const names = [];
for (const [name, value] of Object.entries(widget.callbacks)) {
  if (typeof value === 'function') names.push(name);
  else for (const inner of Object.keys(value)) names.push(name + '.' + inner);
}
const steps = JSON.parse(widget.callbacks.onSalesbotDesignerSave('send_template',
  { send_template: { template_id: '01T', delay: '60' } }));
console.log(JSON.stringify({ deps, names, steps }));
"""
    done = subprocess.run(
        [node, "-e", runner], input=script, capture_output=True, text=True, timeout=30, check=True
    )
    result = json.loads(done.stdout)
    assert result["deps"][0] == "jquery"
    assert set(result["names"]) >= CALLBACKS
    request = result["steps"][0]["question"][0]
    assert request["handler"] == "widget_request"
    assert request["params"]["url"] == "https://api.example/hooks/kommo/salesbot"
    assert request["params"]["data"] == {"template_id": "01T", "delay": "60"}
    exits = {h["params"]["value"] for h in _handlers(result["steps"])}
    assert exits == {"success", "fail"}


def _handlers(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every `exits` handler of the bot's steps, nested conditions included."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("handler") == "exits":
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(steps)
    return found


def test_the_build_refuses_a_file_with_a_bom(tmp_path: Path) -> None:
    source = tmp_path / "widget"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("node_modules"))
    style = source / "style.css"
    style.write_bytes(b"\xef\xbb\xbf" + style.read_bytes())
    with pytest.raises(BuildError, match="byte order mark"):
        build(API_URL, source=source, out=tmp_path / "out")


def test_the_build_refuses_a_broken_locale(tmp_path: Path) -> None:
    source = tmp_path / "widget"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("node_modules"))
    (source / "i18n" / "ru.json").write_text('{"widget": ', encoding="utf-8")
    with pytest.raises(BuildError, match=r"ru\.json: not valid JSON"):
        build(API_URL, source=source, out=tmp_path / "out")


def test_the_support_link_and_email_are_chosen_at_build_time(tmp_path: Path) -> None:
    path = build(
        API_URL,
        out=tmp_path,
        support_link="https://help.example.com/mailer",
        support_email="help@example.com",
    )
    with zipfile.ZipFile(path) as archive:
        support = json.loads(archive.read("manifest.json"))["widget"]["support"]
    assert support == {"link": "https://help.example.com/mailer", "email": "help@example.com"}
    # without them, the placeholders of widget/manifest.json: a reserved domain, nobody's address
    placeholder = json.loads((SOURCE / "manifest.json").read_text("utf-8"))["widget"]["support"]
    assert placeholder == {"link": PLACEHOLDER_SUPPORT_LINK, "email": PLACEHOLDER_SUPPORT_EMAIL}
    for link, email in (("http://help.example.com", None), (None, "not an address")):
        with pytest.raises(BuildError, match="support"):
            build(API_URL, out=tmp_path / "refused", support_link=link, support_email=email)
