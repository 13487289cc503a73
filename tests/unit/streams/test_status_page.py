"""The status page document: self-contained, no markup from data, a CSP that lets it run.

What it shows is tested in a browser: tests/integration/test_status_page.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(_ROOT))

from streams.status_page import STATUS_PAGE_HEADERS, STATUS_PAGE_HTML  # noqa: E402

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def _inline(tag: str) -> list[str]:
    return re.findall(rf"<{tag}>(.*?)</{tag}>", STATUS_PAGE_HTML, flags=re.DOTALL)


def test_page_loads_nothing_from_elsewhere() -> None:
    without_namespace = STATUS_PAGE_HTML.replace(SVG_NAMESPACE, "")
    assert not re.search(r"https?:|@import|url\(", without_namespace)
    links = re.findall(r"""\b(?:src|href)=["']?([^"'\s>]*)""", STATUS_PAGE_HTML)
    assert all(link.startswith("data:") for link in links), links
    assert "api/status" in STATUS_PAGE_HTML  # relative: works behind a path prefix


def test_script_never_parses_data_as_markup() -> None:
    (script,) = _inline("script")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_csp_allows_exactly_the_inline_script_and_style() -> None:
    policy = dict(
        part.strip().split(" ", 1)
        for part in STATUS_PAGE_HEADERS["Content-Security-Policy"].split(";")
    )
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        (body,) = _inline(tag)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert policy[directive] == f"'sha256-{digest}'"
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
