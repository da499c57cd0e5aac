"""Evaluate the conditions code branches on, against the *embedded* interpreter.

Libraries choose their imports by the Python version and the platform:

    if sys.version_info >= (3, 11):      import tomllib
    else:                                import tomli
    if sys.platform == "win32":          import msvcrt
    WIN = sys.platform.startswith("win") # ... later: if WIN: import colorama

`Facts.evaluate` answers True or False when a test depends only on
`sys.version_info`, `sys.platform`, `os.name`, `platform.system()`,
`sys.implementation.name`, `TYPE_CHECKING`, literals and names bound earlier in
the same module to such a test; otherwise it answers None ("cannot tell") and
the analysis keeps both branches. Nothing is run: the expression is walked.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}

_UNKNOWN = object()


@dataclass
class Facts:
    """What the embedded interpreter would answer, plus names the module bound to known values."""

    version_info: tuple[int, ...] = (3, 11, 2)
    platform: str = "linux"
    os_name: str = "posix"
    system: str = "Linux"
    implementation: str = "cpython"
    names: dict[str, Any] = field(default_factory=dict)

    def child(self) -> Facts:
        """The same facts with an empty name table (for another module)."""
        return Facts(self.version_info, self.platform, self.os_name, self.system, self.implementation)

    def evaluate(self, test: ast.expr) -> bool | None:
        value = self._value(test)
        return None if value is _UNKNOWN else bool(value)

    def bind(self, target: ast.expr, value: ast.expr) -> None:
        """Remember `NAME = <known expression>` at module level; forget a NAME rebound to anything else."""
        if isinstance(target, ast.Name):
            # A bare literal (`HAS_X = True` in a try block) says nothing about the interpreter.
            known = _UNKNOWN if isinstance(value, ast.Constant) else self._value(value)
            if known is _UNKNOWN or not isinstance(known, bool | int | str | tuple):
                self.names.pop(target.id, None)
            else:
                self.names[target.id] = known

    def _attribute(self, node: ast.Attribute) -> Any:
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id == "sys":
            if node.attr == "version_info":
                return self.version_info
            if node.attr == "platform":
                return self.platform
        if isinstance(owner, ast.Name) and owner.id == "os" and node.attr == "name":
            return self.os_name
        if node.attr == "TYPE_CHECKING":
            return False
        if isinstance(owner, ast.Attribute) and node.attr in ("major", "minor", "micro"):
            base = self._value(owner)
            if base is self.version_info:
                return self.version_info[("major", "minor", "micro").index(node.attr)]
        if (
            isinstance(owner, ast.Attribute)
            and owner.attr == "implementation"
            and isinstance(owner.value, ast.Name)
            and owner.value.id == "sys"
            and node.attr == "name"
        ):
            return self.implementation
        return _UNKNOWN

    def _call(self, node: ast.Call) -> Any:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "platform"
            and func.attr == "system"
            and not node.args
        ):
            return self.system
        if isinstance(func, ast.Attribute) and func.attr in ("startswith", "endswith") and len(node.args) == 1:
            subject, arg = self._value(func.value), self._value(node.args[0])
            if isinstance(subject, str) and isinstance(arg, str | tuple):
                return getattr(subject, func.attr)(arg)
        return _UNKNOWN

    def _value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Tuple):
            items = tuple(self._value(e) for e in node.elts)
            return _UNKNOWN if _UNKNOWN in items else items
        if isinstance(node, ast.Name):
            if node.id == "TYPE_CHECKING":
                return False
            return self.names.get(node.id, _UNKNOWN)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Subscript):
            base, index = self._value(node.value), node.slice
            if not isinstance(base, tuple | str):
                return _UNKNOWN
            if isinstance(index, ast.Slice):
                parts = [None if p is None else self._value(p) for p in (index.lower, index.upper, index.step)]
                if _UNKNOWN in parts or not all(p is None or isinstance(p, int) for p in parts):
                    return _UNKNOWN
                return base[slice(*parts)]
            key = self._value(index)
            return base[key] if isinstance(key, int) and -len(base) <= key < len(base) else _UNKNOWN
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            operand = self._value(node.operand)
            return _UNKNOWN if operand is _UNKNOWN else not operand
        if isinstance(node, ast.BoolOp):
            return self._boolop(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        return _UNKNOWN

    def _boolop(self, node: ast.BoolOp) -> Any:
        # Three-valued: `unknown and False` is False, `unknown or True` is True.
        values = [self._value(v) for v in node.values]
        known = [bool(v) for v in values if v is not _UNKNOWN]
        if isinstance(node.op, ast.And):
            if not all(known):
                return False
            return _UNKNOWN if len(known) < len(values) else True
        if any(known):
            return True
        return _UNKNOWN if len(known) < len(values) else False

    def _compare(self, node: ast.Compare) -> Any:
        left = self._value(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self._value(right_node)
            compare = _COMPARE.get(type(op))
            if left is _UNKNOWN or right is _UNKNOWN or compare is None:
                return _UNKNOWN
            try:
                if not compare(left, right):
                    return False
            except TypeError:
                return _UNKNOWN
            left = right
        return True
