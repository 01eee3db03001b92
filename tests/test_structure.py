"""The module framework's rules, checked on the source: state only through collections, messages only
through handler tables.

- Only `racenet/chain/store.py` and `racenet/chain/collections.py` open a store by prefix or scan it.
- No chain module touches `ctx.store` itself; collections are declared in keeper class bodies.
- Key-like byte strings (with a `/`) in chain modules appear only as collection or escrow-id
  declarations; the others are hash domains (`b"racenet/…"`).
- No message is dispatched with `isinstance`; each module's messages are its handler table's keys.
"""

from __future__ import annotations

import ast
from pathlib import Path

from racenet.chain.app import App

ROOT = Path(__file__).parent.parent / "racenet"
STORE_OWNERS = {ROOT / "chain" / "store.py", ROOT / "chain" / "collections.py"}
COLLECTIONS = {"Item", "UintItem", "Map", "UintMap", "KeySet", "EscrowIds"}


def is_collection(node: ast.AST) -> bool:
    """A call that declares a collection (or escrow ids)."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in COLLECTIONS


def key_like_bytes(node: ast.AST) -> bytes | None:
    """A bytes literal with a `/` in it (a key prefix, or a hash domain)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes) and b"/" in node.value:
        return node.value
    return None


def sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "abci/pb" not in str(p))


def module_sources() -> list[Path]:
    return [p for p in sources() if (ROOT / "chain" / "modules") in p.parents]


def test_only_the_store_and_collections_open_or_scan_a_store() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in sources()
        if p not in STORE_OWNERS and ("PrefixStore(" in p.read_text() or ".iterate(" in p.read_text())
    ]
    assert offenders == []


def test_chain_modules_never_touch_the_store_directly() -> None:
    offenders = []
    for path in module_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "store":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_collections_are_declared_only_in_keeper_classes() -> None:
    offenders = []
    for path in sources():
        if path in STORE_OWNERS:
            continue
        tree = ast.parse(path.read_text())
        in_class_body = {
            id(stmt.value)
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef)
            for stmt in cls.body
            if isinstance(stmt, ast.Assign)
        }
        offenders += [
            f"{path.relative_to(ROOT)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and is_collection(node) and id(node) not in in_class_body
        ]
    assert offenders == []


def test_key_bytes_appear_only_in_collection_declarations() -> None:
    offenders = []
    for path in module_sources():
        tree = ast.parse(path.read_text())
        declared = {id(node.args[0]) for node in ast.walk(tree) if isinstance(node, ast.Call) and is_collection(node)}
        for node in ast.walk(tree):
            value = key_like_bytes(node)
            if value is not None and id(node) not in declared and not value.startswith(b"racenet/"):
                offenders.append(f"{path.relative_to(ROOT)}: {value!r}")
    assert offenders == []


def test_no_isinstance_dispatch_of_messages(tmp_path: Path) -> None:
    app = App(tmp_path / "app.db")
    message_classes = {cls.__name__ for cls in app.registry.values()}
    app.close()
    offenders = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & message_classes:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_messages_are_exactly_the_handler_tables(tmp_path: Path) -> None:
    app = App(tmp_path / "app.db")
    types = [m.TYPE for module in app.modules.values() for m in module.messages()]
    assert len(types) == len(set(types)) == len(app.registry) == 48
    for module in app.modules.values():
        assert module.messages() == tuple(module.handlers)
        assert all(m.TYPE.startswith(module.name + "/") for m in module.messages())
    app.close()
