"""Generates docs/api.md, the API reference of the Python package, from its docstrings.

    python tools/gen_api_docs.py           # rewrite docs/api.md
    python tools/gen_api_docs.py --check   # exit 1 if docs/api.md is out of date

Every public module of ``python/nncabac`` is listed (files and subpackages whose names do not
start with ``_``), found on disk, so a new module appears without editing this script. The
modules are read with :mod:`ast`, not imported: optional dependencies (torch, flwr) need not be
installed, nothing runs, and the output depends only on the sources. A module's public names are
its ``__all__`` (else its top-level definitions without a leading underscore); names it imports
from another public module link there, and names from the compiled extension take their
signatures from its stubs (``_nncabac.pyi``). Signatures are the source text of each annotation
and default.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "nncabac"
OUT = ROOT / "docs" / "api.md"
COMMAND = "python tools/gen_api_docs.py"


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    source: str
    public: list[str] = field(default_factory=list)


def _modules() -> list[Module]:
    """The package and its public modules, package first, then by dotted name."""
    found: list[tuple[str, Path]] = []

    def walk(directory: Path, prefix: str) -> None:
        found.append((prefix, directory / "__init__.py"))
        for p in sorted(directory.iterdir()):
            if p.name.startswith("_"):
                continue
            if p.suffix == ".py":
                found.append((f"{prefix}.{p.stem}", p))
            elif p.is_dir() and (p / "__init__.py").exists():
                walk(p, f"{prefix}.{p.name}")

    walk(PACKAGE, "nncabac")
    mods = []
    for name, path in found:
        source = path.read_text(encoding="utf-8")
        mods.append(Module(name, path, ast.parse(source), source))
    for m in mods:
        m.public = _public_names(m.tree)
    return mods


def _public_names(tree: ast.Module) -> list[str]:
    names: list[str] = []
    has_all = False
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AugAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == "__all__" and value is not None:
            has_all = True
            names += [n for n in ast.literal_eval(value) if n not in names]
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) == "__all__.extend"
        ):
            names += [n for n in ast.literal_eval(node.value.args[0]) if n not in names]
    if has_all:
        return names
    for node in tree.body:
        for n in _defined(node):
            if not n.startswith("_") and n not in names:
                names.append(n)
    return names


def _defined(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj|py:\w+):`(~?)([^`]+)`")


def _role(m: re.Match[str]) -> str:
    """``:role:`~a.b``` -> `b`; ``:role:`a.b``` -> `a.b`."""
    return f"`{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}`"


def _doc(text: str | None) -> str:
    """A docstring as Markdown: reST roles become code, doctest blocks become fenced code."""
    if not text:
        return ""
    text = _ROLE.sub(_role, text)
    out: list[str] = []
    in_code = False
    for line in text.splitlines():
        is_code = line.lstrip().startswith((">>>", "..."))
        if is_code and not in_code:
            out.append("```python")
            in_code = True
        elif in_code and not line.strip():
            out.append("```")
            in_code = False
        out.append(line)
    if in_code:
        out.append("```")
    return "\n".join(out).strip()


def _seg(mod: Module, node: ast.AST | None) -> str:
    if node is None:
        return ""
    text = ast.get_source_segment(mod.source, node) or ast.unparse(node)
    return " ".join(text.split())


def _signature(mod: Module, fn: ast.FunctionDef | ast.AsyncFunctionDef, drop_self: bool) -> str:
    a = fn.args
    parts: list[str] = []

    def arg(x: ast.arg, default: ast.expr | None = None) -> str:
        s = x.arg
        if x.annotation is not None:
            s += f": {_seg(mod, x.annotation)}"
        if default is not None:
            s += (
                f" = {_seg(mod, default)}" if x.annotation is not None else f"={_seg(mod, default)}"
            )
        return s

    positional = a.posonlyargs + a.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(
        a.defaults
    )
    for i, (x, d) in enumerate(zip(positional, defaults)):
        if drop_self and i == 0:
            continue
        parts.append(arg(x, d))
        if a.posonlyargs and x is a.posonlyargs[-1]:
            parts.append("/")
    if a.vararg is not None:
        parts.append("*" + arg(a.vararg))
    elif a.kwonlyargs:
        parts.append("*")
    for x, d in zip(a.kwonlyargs, a.kw_defaults):
        parts.append(arg(x, d))
    if a.kwarg is not None:
        parts.append("**" + arg(a.kwarg))
    sig = f"({', '.join(parts)})"
    if fn.returns is not None:
        sig += f" -> {_seg(mod, fn.returns)}"
    return sig


def _decorators(
    mod: Module, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
) -> list[str]:
    return [_seg(mod, d) for d in node.decorator_list]


def _attr_doc(body: list[ast.stmt], i: int) -> str:
    """The string literal right after statement ``i`` (an attribute docstring), if any."""
    if i + 1 < len(body):
        nxt = body[i + 1]
        if (
            isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            return _doc(nxt.value.value)
    return ""


def _function(
    mod: Module, fn: ast.FunctionDef | ast.AsyncFunctionDef, qual: str, level: int, method: bool
) -> list[str]:
    decos = _decorators(mod, fn)
    kind = "property" if "property" in decos or any(d.endswith(".setter") for d in decos) else None
    if kind:
        ret = f": {_seg(mod, fn.returns)}" if fn.returns is not None else ""
        head = f"{'#' * level} `{qual}{ret}` (property)"
    else:
        prefix = "async " if isinstance(fn, ast.AsyncFunctionDef) else ""
        static = "staticmethod" in decos
        head = (
            f"{'#' * level} `{prefix}{qual}{_signature(mod, fn, drop_self=method and not static)}`"
        )
    lines = [head, ""]
    doc = _doc(ast.get_docstring(fn))
    if doc:
        lines += [doc, ""]
    return lines


def _class(mod: Module, cls: ast.ClassDef, qual: str, level: int) -> list[str]:
    bases = ", ".join(_seg(mod, b) for b in cls.bases + [k.value for k in cls.keywords])
    decos = _decorators(mod, cls)
    tag = " (dataclass)" if any(d.split("(")[0].endswith("dataclass") for d in decos) else ""
    lines = [f"{'#' * level} class `{qual}{f'({bases})' if bases else ''}`{tag}", ""]
    doc = _doc(ast.get_docstring(cls))
    if doc:
        lines += [doc, ""]
    fields = []
    for i, node in enumerate(cls.body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and not node.target.id.startswith("_")
        ):
            ann = _seg(mod, node.annotation)
            if ann.startswith(("ClassVar", "typing.ClassVar")):
                continue
            default = f" = {_seg(mod, node.value)}" if node.value is not None else ""
            note = _attr_doc(cls.body, i)
            fields.append(
                f"* `{node.target.id}: {ann}{default}`"
                + (f": {' '.join(note.split())}" if note else "")
            )
    if fields:
        lines += ["Fields:", "", *fields, ""]
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            public = not node.name.startswith("_") or node.name in ("__init__", "__call__")
            if public:
                lines += _function(mod, node, f"{qual}.{node.name}", level + 1, method=True)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            lines += _class(mod, node, f"{qual}.{node.name}", level + 1)
    return lines


def _anchor(name: str) -> str:
    """GitHub's anchor of a heading holding ``name`` in code: punctuation other than ``_`` and
    ``-`` dropped."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def _stub_index() -> tuple[Module | None, dict[str, ast.stmt]]:
    stub = PACKAGE / "_nncabac.pyi"
    if not stub.exists():
        return None, {}
    source = stub.read_text(encoding="utf-8")
    mod = Module("nncabac._nncabac", stub, ast.parse(source), source)
    index: dict[str, ast.stmt] = {}
    for node in mod.tree.body:
        for n in _defined(node):
            index[n] = node
    return mod, index


def _imports(mod: Module) -> dict[str, str]:
    """Public names imported from elsewhere in the package: name -> source module."""
    out: dict[str, str] = {}
    pkg = mod.name if mod.path.name == "__init__.py" else mod.name.rsplit(".", 1)[0]
    for node in mod.tree.body:
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
            src = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                out[alias.asname or alias.name] = src if node.module else f"{base}.{alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nncabac"):
            for alias in node.names:
                out[alias.asname or alias.name] = node.module
    return out


def render() -> str:
    mods = _modules()
    documented = {m.name for m in mods}
    stub_mod, stubs = _stub_index()
    lines = [
        "# API reference",
        "",
        f"Generated from the docstrings by `{COMMAND}`; do not edit by hand (a test fails when",
        "this file is out of date). The command-line interface is described in the README.",
        "",
        "Modules:",
        "",
    ]
    for m in mods:
        summary = (ast.get_docstring(m.tree) or "").strip().split("\n\n")[0]
        summary = " ".join(_doc(summary).split())
        lines.append(
            f"* [`{m.name}`](#{_anchor(m.name)}): {summary}"
            if summary
            else f"* [`{m.name}`](#{_anchor(m.name)})"
        )
    lines.append("")
    from_extension: dict[str, str] = {}  # names of the extension: where they are documented
    for m in mods:
        lines += ["---", "", f"## `{m.name}`", ""]
        doc = _doc(ast.get_docstring(m.tree))
        if doc:
            lines += [doc, ""]
        defs: dict[str, tuple[int, ast.stmt]] = {}
        for i, node in enumerate(m.tree.body):
            for n in _defined(node):
                defs.setdefault(n, (i, node))
        imported = _imports(m)
        reexports: list[str] = []
        for name in m.public:
            qual = f"{m.name}.{name}"
            if name in defs:
                i, node = defs[name]
                if isinstance(node, ast.ClassDef):
                    lines += _class(m, node, qual, 3)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines += _function(m, node, qual, 3, method=False)
                else:
                    value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
                    text = _seg(m, value)
                    shown = f" = {text}" if text and len(text) <= 80 else ""
                    lines += [f"### `{qual}{shown}`", ""]
                    note = _attr_doc(m.tree.body, i)
                    if note:
                        lines += [note, ""]
            elif name in imported:
                src = imported[name]
                if src in documented:
                    reexports.append(f"[`{name}`](#{_anchor(src)}) (from `{src}`)")
                elif name in from_extension:
                    where = from_extension[name]
                    reexports.append(f"[`{name}`](#{_anchor(where)}) (from `{where}`)")
                elif src.endswith("._nncabac") and stub_mod is not None and name in stubs:
                    from_extension[name] = m.name
                    node = stubs[name]
                    if isinstance(node, ast.ClassDef):
                        lines += _class(stub_mod, node, qual, 3)
                    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        lines += _function(stub_mod, node, qual, 3, method=False)
                    else:
                        lines += [f"### `{qual}`", ""]
                    lines += ["(Defined in the compiled extension `nncabac._nncabac`.)", ""]
                else:
                    reexports.append(f"`{name}` (from `{src}`)")
            elif name in documented or f"{m.name}.{name}" in documented:
                target = name if name in documented else f"{m.name}.{name}"
                reexports.append(f"[`{name}`](#{_anchor(target)}) (module)")
            else:
                reexports.append(f"`{name}`")
        if reexports:
            lines += ["Also exported here: " + ", ".join(reexports) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    args = ap.parse_args()
    text = render()
    if args.check:
        old = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if old != text:
            diff = difflib.unified_diff(
                old.splitlines(), text.splitlines(), "docs/api.md", "generated", lineterm=""
            )
            print("\n".join(list(diff)[:60]))
            print(f"docs/api.md is out of date: run `{COMMAND}`")
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"written to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
