"""The shape of the code: the stages import one way, the board's core imports none of them, and
no module waits on itself (grimp reads every import statement, those inside functions too).

    lic.errors, lic.plugins  <-  host  <-  training  <-  quantize  <-  export  <-  hls  <-  board  <-  bench

lic/cli.py dispatches by module name and lic/plugins.py names the torch and FINN backends, so
neither is an import. host/ is what a PYNQ board installs: it must not reach torch, onnx or qonnx."""

import subprocess
import sys

import grimp
import pytest

STAGES = ["host", "training", "quantize", "export", "hls", "board", "bench"]
GRAPH = grimp.build_graph(*STAGES, "lic")


def _cycles(modules: set[str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), among `modules`."""
    edges = {m: GRAPH.find_modules_directly_imported_by(m) & modules for m in modules}
    index, low, stack, on, found, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("later", STAGES[1:])
def test_host_is_a_leaf(later):
    chain = GRAPH.find_shortest_chain(importer="host", imported=later, as_packages=True)
    assert chain is None, f"host/ reaches {later}/: {' -> '.join(chain)}"


def test_every_import_follows_the_data_flow():
    """A module imports only from its own stage and the stages before it (and lic's core)."""
    order = {stage: i for i, stage in enumerate(STAGES)}
    against = []
    for module in sorted(m for m in GRAPH.modules if m.split(".")[0] in order):
        for imported in sorted(GRAPH.find_modules_directly_imported_by(module)):
            a, b = module.split(".")[0], imported.split(".")[0]
            if b in order and order[b] > order[a]:
                against.append(f"{module} -> {imported}")
    assert against == []


def test_lic_core_imports_no_stage():
    for module in ("lic.errors", "lic.plugins"):
        for stage in STAGES:
            assert GRAPH.find_shortest_chain(importer=module, imported=stage, as_packages=True) is None


def test_no_module_imports_itself_through_others():
    modules = {m for m in GRAPH.modules if m.split(".")[0] in STAGES + ["lic"]}
    assert _cycles(modules) == []


def test_the_board_path_imports_without_torch_onnx_or_qonnx():
    """What host/install_board.sh installs is enough: every host module imports with them blocked."""
    code = ("import sys\n"
            "for name in ('torch', 'onnx', 'onnxruntime', 'qonnx', 'finn', 'brevitas', 'compressai'):\n"
            "    sys.modules[name] = None\n"
            "import pkgutil, importlib, host\n"
            "for m in pkgutil.iter_modules(host.__path__):\n"
            "    importlib.import_module('host.' + m.name)\n"
            "import lic.cli, lic.plugins\n")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-2000:]
