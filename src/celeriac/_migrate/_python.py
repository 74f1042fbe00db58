"""Python files, read with ``ast`` (never imported): Celery imports, the app's arguments, settings
(``conf.update``, ``conf.x = ...``, Django-style ``CELERY_*`` names, a ``celeryconfig`` module), task
decorators and their options, and calls of app methods."""

from __future__ import annotations

import ast
import datetime
import re
from typing import Any

from ._findings import Finding, Status
from ._oracle import (
    UNKNOWN,
    check_app_argument,
    check_app_method,
    check_django_setting,
    check_import,
    check_setting,
    check_task_option,
)

_OLD_SETTING = re.compile(r"^(CELERY|CELERYD|CELERYBEAT|BROKER)_[A-Z0-9_]+$")
_SETTING_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# decorators that make a task without naming an app
_TASK_DECORATORS = frozenset({"shared_task", "task"})


def literal(node: ast.AST | None) -> Any:
    """The value of a literal expression (``timedelta(hours=12)`` included), else :data:`UNKNOWN`."""
    if node is None:
        return UNKNOWN
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Call) and _name(node.func) in ("timedelta", "datetime.timedelta"):
        try:
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
            args = [ast.literal_eval(a) for a in node.args]
            return datetime.timedelta(*args, **kwargs)
        except (ValueError, TypeError, SyntaxError, OverflowError):
            return UNKNOWN
    return UNKNOWN


def _name(node: ast.AST) -> str:
    """``a.b.c`` for a chain of attributes on a name, else ``""``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: str, settings_module: bool) -> None:
        self.path = path
        self.settings_module = settings_module
        self.findings: list[Finding] = []
        self.apps: set[str] = {"current_app"}
        self.referenced: set[str] = set()
        self.result_use: ast.AST | None = None

    def add(self, node: ast.AST, kind: str, subject: str, verdict: tuple[Status, str, str]) -> None:
        status, edit, note = verdict
        self.findings.append(
            Finding(self.path, getattr(node, "lineno", 1), kind, subject, status, edit, note)
        )

    # ---- imports ---------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in ("celery", "kombu"):
                self.add(node, "import", f"import {alias.name}", check_import(alias.name))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level == 0 and module.split(".")[0] in ("celery", "kombu"):
            for alias in node.names:
                verdict = check_import(module, alias.name)
                self.add(node, "import", f"from {module} import {alias.name}", verdict)

    # ---- the app, its settings and methods -------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._assigned(node, target, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._assigned(node, node.target, node.value)
        self.generic_visit(node)

    def _assigned(self, node: ast.stmt, target: ast.expr, value: ast.expr) -> None:
        if isinstance(value, ast.Call) and _name(value.func).split(".")[-1] in ("Celery", "Celeriac"):
            if isinstance(target, ast.Name):
                self.apps.add(target.id)
            for kw in value.keywords:
                if kw.arg:
                    self.add(kw.value, "app argument", kw.arg, check_app_argument(kw.arg, literal(kw.value)))
        if isinstance(target, ast.Name) and node in self.module_level:
            name = target.id
            if _OLD_SETTING.match(name):
                shown, verdict = check_django_setting(name, literal(value))
                self.add(node, "setting", name if shown == name else f"{name} ({shown})", verdict)
            elif self.settings_module and _SETTING_NAME.match(name):
                self.add(node, "setting", name, check_setting(name, literal(value)))
        # app.conf.x = v ; app.conf["x"] = v
        if isinstance(target, ast.Attribute) and _name(target.value).endswith(".conf"):
            self.add(node, "setting", target.attr, check_setting(target.attr, literal(value)))
        if (
            isinstance(target, ast.Subscript)
            and _name(target.value).endswith(".conf")
            and isinstance(target.slice, ast.Constant)
            and isinstance(target.slice.value, str)
        ):
            key = target.slice.value
            self.add(node, "setting", key, check_setting(key, literal(value)))

    def visit_Call(self, node: ast.Call) -> None:
        func = _name(node.func)
        head, _, method = func.rpartition(".")
        if method == "update" and head.endswith(".conf"):
            for kw in node.keywords:
                if kw.arg:
                    self.add(kw.value, "setting", kw.arg, check_setting(kw.arg, literal(kw.value)))
            for arg in node.args:
                if isinstance(arg, ast.Dict):
                    for key, val in zip(arg.keys, arg.values):
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            self.add(key, "setting", key.value, check_setting(key.value, literal(val)))
        elif head in self.apps and method:
            self.add(node, "app method", f"{head}.{method}", check_app_method(method))
            if method == "config_from_object" and node.args:
                ref = literal(node.args[0])
                if isinstance(ref, str):
                    self.referenced.add(ref.split(":")[0].rsplit(".", 1)[-1])
        if method in ("get", "join") and any(kw.arg in ("timeout", "propagate") for kw in node.keywords):
            self.result_use = self.result_use or node
        if func.rsplit(".", 1)[-1] == "AsyncResult":
            self.result_use = self.result_use or node
        self.generic_visit(node)

    # ---- tasks -----------------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            name = _name(call.func if call else deco)
            head, _, last = name.rpartition(".")
            if not (last in _TASK_DECORATORS and (not head or head in self.apps)) and not (
                last == "task" and head in self.apps
            ):
                continue
            if call is None:
                continue
            for kw in call.keywords:
                if kw.arg:
                    verdict = check_task_option(kw.arg, literal(kw.value))
                    self.add(kw.value, "task option", f"{node.name}: {kw.arg}", verdict)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def run(self, tree: ast.Module) -> None:
        self.module_level = set(tree.body)
        self.visit(tree)
        if self.result_use is not None:
            self.add(
                self.result_use,
                "usage",
                "results read (.get / AsyncResult)",
                (
                    Status.DIFFERS,
                    "",
                    "celeriac stores results only when asked: set ignore_result=False on the tasks "
                    "whose results are read (or task_ignore_result=False)",
                ),
            )


def scan_python(path: str, text: str, *, settings: bool = False) -> tuple[list[Finding], set[str]]:
    """Findings of one Python file, and the last components of modules it passes to
    ``config_from_object`` (read again as settings modules)."""
    try:
        tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError):
        return [], set()
    visitor = _Visitor(path, settings)
    visitor.run(tree)
    return visitor.findings, visitor.referenced
