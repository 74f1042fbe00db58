"""``-A`` loading: every way it can go wrong gives an actionable message."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celeriac import Celeriac
from celeriac.cli._loader import AppLoadError, load_app


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a module with the given source into the current directory; return its unique name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    names: list[str] = []

    def make(source: str) -> str:
        name = f"loadertest_{secrets.token_hex(4)}"
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        return name

    yield make
    for name in names:
        sys.modules.pop(name, None)


APP_SOURCE = "from celeriac import Celeriac\napp = Celeriac('x', broker='memory://')\n"


def test_module_colon_attribute(make_module: Callable[[str], str]) -> None:
    name = make_module(APP_SOURCE)
    app = load_app(f"{name}:app")
    assert isinstance(app, Celeriac)
    assert app is sys.modules[name].app


def test_module_alone_finds_app(make_module: Callable[[str], str]) -> None:
    name = make_module(APP_SOURCE)
    assert load_app(name) is sys.modules[name].app


def test_dotted_attribute(make_module: Callable[[str], str]) -> None:
    name = make_module(APP_SOURCE + "class ns:\n    inner = app\n")
    assert load_app(f"{name}:ns.inner") is sys.modules[name].app


def test_cwd_is_put_on_sys_path(make_module: Callable[[str], str], tmp_path: Path) -> None:
    name = make_module(APP_SOURCE)
    sys.path[:] = [p for p in sys.path if p not in ("", str(tmp_path))]
    load_app(name)
    assert str(tmp_path) in sys.path


def test_module_not_found(make_module: Callable[[str], str]) -> None:
    with pytest.raises(AppLoadError, match=r"cannot import 'no_such_module_xyz'.*PYTHONPATH"):
        load_app("no_such_module_xyz:app")


def test_parent_package_not_found() -> None:
    with pytest.raises(AppLoadError, match=r"no module named 'no_such_pkg_xyz'"):
        load_app("no_such_pkg_xyz.tasks:app")


def test_missing_dependency_inside_the_module_is_not_reported_as_a_typo(
    make_module: Callable[[str], str],
) -> None:
    name = make_module("import some_missing_dependency_xyz\n")
    with pytest.raises(AppLoadError) as info:
        load_app(name)
    text = str(info.value)
    assert f"importing {name!r} failed with ModuleNotFoundError" in text
    assert "some_missing_dependency_xyz" in text
    assert "Traceback" in text  # their bug: show where


def test_error_while_importing_shows_the_traceback(make_module: Callable[[str], str]) -> None:
    name = make_module("x = 1\nraise RuntimeError('broken at import')\n")
    with pytest.raises(AppLoadError) as info:
        load_app(f"{name}:app")
    assert "RuntimeError: broken at import" in str(info.value)
    assert f"{name}.py" in str(info.value)


def test_attribute_missing_lists_the_apps_defined(make_module: Callable[[str], str]) -> None:
    name = make_module("from celeriac import Celeriac\nshop = Celeriac('s', broker='memory://')\n")
    assert load_app(name).main == "s"  # the module's one app, found as Celery finds it
    with pytest.raises(AppLoadError, match="has no attribute 'nope'"):
        load_app(f"{name}:nope")


def test_attribute_missing_without_any_app(make_module: Callable[[str], str]) -> None:
    name = make_module("x = 1\n")
    with pytest.raises(AppLoadError, match=r"define `app = Celeriac\(...\)` there"):
        load_app(name)


def test_not_a_celeriac(make_module: Callable[[str], str]) -> None:
    name = make_module("app = 42\n")
    with pytest.raises(AppLoadError, match=rf"{name}:app is a int, not a Celeriac app"):
        load_app(f"{name}:app")


def test_empty_module_name() -> None:
    with pytest.raises(AppLoadError, match=r"package\.module:app"):
        load_app(":app")


def test_an_invalid_setting_read_at_import_is_a_configuration_error(
    make_module: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from celeriac import ConfigurationError

    monkeypatch.setenv("CELERIAC_LEASE_S", "-1")
    name = make_module(APP_SOURCE)
    with pytest.raises(ConfigurationError, match="invalid setting 'lease_s'"):  # one Error: line, exit 1
        load_app(f"{name}:app")
