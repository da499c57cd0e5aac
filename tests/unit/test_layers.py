"""kiln's modules import downwards only, and no two of them import each other (grimp's import graph).

The layers are written down here, once, highest first: a module may import from its own layer and
the layers below it. docs/architecture.md explains them; a new input, target or export goes in the
layer of its kind (a new stage beside the old ones, never a branch inside one).
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

LAYERS: tuple[tuple[str, ...], ...] = (
    ("kiln.__main__", "kiln.cli"),  # flags -> calls
    ("kiln.compose", "kiln.engine", "kiln.export", "kiln.summon", "kiln.snapshot", "kiln.trace"),
    ("kiln.build",),  # the build API: a source of any kind -> an image in the store, audited
    ("kiln.check",),  # the import audit: an image run once on the unix target
    ("kiln.runtime",),  # instances: supervisors, events, stats, crash reports
    ("kiln.targets",),  # running one image: qemu, unix, ports, relays, snapshot restore
    ("kiln.oci",),  # container images and Dockerfiles in
    ("kiln.registry", "kiln.surface"),  # images out (push/pull); what an image exposes
    ("kiln.image",),  # laying out, packing and sealing an image
    ("kiln.debs", "kiln.discover"),  # Debian packages and services; path -> App
    ("kiln.analyze", "kiln.dockerfile"),  # what an app needs, without running it
    ("kiln.deps", "kiln.kernel", "kiln.baselines"),  # PyPI dependencies; kernels; comparison builds
    ("kiln.interpreter",),  # the embedded interpreter, probed
    ("kiln.config", "kiln.policy", "kiln.sandbox", "kiln.store", "kiln.guest", "kiln.daemon"),
    ("kiln.manifest", "kiln.shell_form", "kiln.units", "kiln._proc", "kiln.records"),  # the contracts
    ("kiln.atomic", "kiln.paths", "kiln.errors", "kiln"),
)


Layers = tuple[tuple[str, ...], ...]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("kiln", exclude_type_checking_imports=True)


def layer_of(module: str, layers: Layers = LAYERS) -> int:
    best, found = -1, None
    for index, layer in enumerate(layers):
        for name in layer:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    if found is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return found


def upward_imports(graph: grimp.ImportGraph, layers: Layers) -> list[str]:
    upward = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if layer_of(imported, layers) < layer_of(importer, layers):
                lines = graph.get_import_details(importer=importer, imported=imported)
                where = ", ".join(str(d["line_number"]) for d in lines)
                upward.append(f"{importer} (line {where}) imports {imported}, a higher layer")
    return upward


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's strongly connected components over module imports, those of more than one module."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for start in edges:
        if start in index:
            continue
        enter(start)
        work = [(start, iter(edges[start]))]  # iterative: no recursion limit to meet
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    enter(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while (member := stack.pop()) != node:
                    on_stack.discard(member)
                    component.append(member)
                on_stack.discard(node)
                if component:
                    found.append(sorted([node, *component]))
    return found


def test_every_module_has_a_layer(graph: grimp.ImportGraph) -> None:
    for module in graph.modules:
        layer_of(module)


def test_no_lower_layer_imports_a_higher_one(graph: grimp.ImportGraph) -> None:
    upward = upward_imports(graph, LAYERS)
    assert not upward, "\n".join(upward)


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above can fail: a package with both faults shows both."""
    root = tmp_path / "pkgfault"
    (root / "low").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "low" / "__init__.py").write_text("")
    (root / "low" / "a.py").write_text("from pkgfault.low import b\n")
    (root / "low" / "b.py").write_text("from pkgfault.low import a\nfrom pkgfault import high\n")
    (root / "high.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    fault = grimp.build_graph("pkgfault")
    assert cycles(fault) == [["pkgfault.low.a", "pkgfault.low.b"]]
    layers = (("pkgfault.high",), ("pkgfault.low", "pkgfault"))
    assert upward_imports(fault, layers) == ["pkgfault.low.b (line 2) imports pkgfault.high, a higher layer"]


def test_bench_and_the_test_support_import_no_test_module() -> None:
    """kiln_testing is what tests and bench share: bench imports it, never a test module; it imports neither
    (and kiln imports none of the three)."""
    graph = grimp.build_graph("kiln", "kiln_testing", "bench", "tests", exclude_type_checking_imports=True)
    wrong = []
    for importer, forbidden in (("kiln", ("kiln_testing", "bench", "tests")), ("kiln_testing", ("bench", "tests")),
                                ("bench", ("tests",))):  # fmt: skip
        for module in sorted(m for m in graph.modules if m == importer or m.startswith(importer + ".")):
            for imported in graph.find_modules_directly_imported_by(module):
                if imported.split(".")[0] in forbidden:
                    wrong.append(f"{module} imports {imported}")
    assert not wrong, "\n".join(wrong)
    assert "kiln_testing.faults.harness" in graph.find_modules_directly_imported_by("bench.faults")  # it sees them
