"""The registry is the one place that knows which config class is which input or format.

Read from the source with ``ast``: outside ``pipeline/registry.py`` no module calls ``isinstance`` on an
input's or a parser's config class; the engines, ``inspect``, ``security`` and the Dagster layer ask
the registry what an input reads instead.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import pipeline
from pipeline import registry

ROOT = Path(pipeline.__file__).resolve().parent


def config_classes(root: Path) -> set[str]:
    """The names of the input and parser config classes defined under ``root``."""
    names = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("InputConfig", "ParserConfig")):
                names.add(node.name)
    return names


def class_tests(root: Path, classes: set[str]) -> list[str]:
    """``file:line`` of each ``isinstance(x, C)`` (or ``(C, ...)``) on one of ``classes``, outside the registry."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "registry.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
                    and len(node.args) == 2):
                continue
            kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            named = {kind.id if isinstance(kind, ast.Name) else kind.attr if isinstance(kind, ast.Attribute) else ""
                     for kind in kinds}
            if named & classes:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_no_module_but_the_registry_tests_a_config_class() -> None:
    classes = config_classes(ROOT)
    assert {"S3InputConfig", "KinesisInputConfig", "FileInputConfig", "CsvParserConfig"} <= classes
    found = class_tests(ROOT, classes)
    assert not found, "isinstance on a config class (ask pipeline.registry instead):\n" + "\n".join(found)


def test_the_scan_finds_a_class_test_in_any_spelling(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "registry.py").write_text("def f(x):\n    return isinstance(x, S3InputConfig)\n")
    (package / "a.py").write_text("class S3InputConfig: ...\n\n\n"
                                  "def f(x):\n    return isinstance(x, (int, S3InputConfig))\n")
    (package / "b.py").write_text("from pkg import config\n\n\n"
                                  "def g(x):\n    return isinstance(x, config.S3InputConfig)\n")
    (package / "c.py").write_text("def h(x):\n    return isinstance(x, dict)\n")
    assert class_tests(package, config_classes(package)) == ["pkg/a.py:5", "pkg/b.py:5"]


@pytest.mark.parametrize("kind", sorted(registry.INPUTS))
def test_each_input_names_modules_that_implement_it(kind: str) -> None:
    spec = registry.INPUTS[kind]
    assert spec.reads in ("objects", "stream")
    assert (spec.store is not None) == (spec.reads == "objects")
    if spec.store:
        assert callable(importlib.import_module(spec.store).store)
    if spec.configures:
        assert callable(importlib.import_module(spec.configures).configure)


@pytest.mark.parametrize("kind", registry.parser_types())
def test_each_parser_module_defines_what_the_registry_calls(kind: str) -> None:
    module = registry.parser_module(kind)
    assert all(callable(getattr(module, name)) for name in ("configure", "reader", "guess"))


def test_what_an_input_reads_is_asked_of_the_registry() -> None:
    from pipeline import config as config_module

    s3 = config_module.parse({"in": {"type": "s3", "bucket": "b", "path_prefix": "p/", "parser": {
        "type": "csv", "columns": [{"name": "a", "type": "string"}]}, "notifications": {"queue": "q"}},
        "out": {"type": "postgresql", "url": "postgresql://localhost/db", "table": "t"}}, name="s3")
    kinesis = config_module.parse({"in": {"type": "kinesis", "stream": "s", "parser": {
        "columns": [{"name": "a", "type": "string"}]}},
        "out": {"type": "postgresql", "url": "postgresql://localhost/db", "table": "t"}}, name="k")
    assert registry.in_s3(s3.input) and not registry.is_stream(s3.input) and registry.in_dagster(s3.input)
    assert registry.notifications(s3.input).queue == "q"
    assert registry.is_stream(kinesis.input) and not registry.in_s3(kinesis.input)
    assert registry.notifications(kinesis.input) is None
    assert config_module.aws_endpoint_variables(kinesis) == ("AWS_ENDPOINT_URL_KINESIS",)
