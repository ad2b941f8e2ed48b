"""A multi grader's `calculate_output`: arithmetic over its graders' names, parsed safely.

The formula is parsed with Python's `ast` and walked over a whitelist: numbers, names of the
sub-graders, `+ - * /`, `**` and OpenAI's `^` (both power), unary `+`/`-`, parentheses, and calls of
min, max, abs, floor, ceil, exp, sqrt, log. Anything else (attributes, subscripts, strings,
lambdas, comprehensions, other calls such as `__import__('os')`) is refused when the grader is
validated; nothing is ever `eval`ed. Numbers are floats, so `9 ** 9 ** 9` overflows (an error)
instead of computing a huge integer.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

from trainer.graders.models import MAX_FORMULA_CHARS
from trainer.graders.results import GraderError, GradingFailure

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, tuple[Callable[..., float], int | None]] = {  # name -> (function, arity; None: 1+)
    "min": (min, None),
    "max": (max, None),
    "abs": (abs, 1),
    "floor": (lambda x: float(math.floor(x)), 1),
    "ceil": (lambda x: float(math.ceil(x)), 1),
    "exp": (math.exp, 1),
    "sqrt": (math.sqrt, 1),
    "log": (math.log, 1),
}


class Formula:
    """A parsed `calculate_output`; `evaluate` it over the sub-graders' scores by name."""

    def __init__(self, text: str, names: set[str]) -> None:
        """GraderError when `text` is not a formula over `names`."""
        if len(text) > MAX_FORMULA_CHARS:
            raise GraderError(f"calculate_output is longer than {MAX_FORMULA_CHARS} characters.")
        try:
            # `^` is power in OpenAI's formulas; as text, so that it binds as tightly as `**`.
            tree = ast.parse(text.replace("^", "**").strip(), mode="eval")
            self._check(tree.body, names)
        except GraderError:
            raise
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise GraderError(f"calculate_output is not a formula: {exc}") from None
        self._tree = tree.body
        self.names = names

    def evaluate(self, scores: Mapping[str, float]) -> float:
        try:
            value = self._eval(self._tree, scores)
        except (ArithmeticError, ValueError, RecursionError) as exc:
            raise GradingFailure("other_error", f"calculate_output failed: {exc}") from None
        if not math.isfinite(value):
            raise GradingFailure("other_error", f"calculate_output gave {value}")
        return value

    def _check(self, node: ast.AST, names: set[str]) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise GraderError(f"calculate_output may only contain numbers, not {node.value!r}.")
        elif isinstance(node, ast.Name):
            if node.id not in names:
                known = ", ".join(sorted(names))
                raise GraderError(f"calculate_output uses '{node.id}', which is not a grader ({known}).")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left, names)
            self._check(node.right, names)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand, names)
        elif isinstance(node, ast.Call):
            function = node.func.id if isinstance(node.func, ast.Name) else None
            if function not in _FUNCTIONS or node.keywords:
                allowed = ", ".join(_FUNCTIONS)
                raise GraderError(f"calculate_output may only call {allowed}.")
            arity = _FUNCTIONS[function][1]
            if (arity is None and not node.args) or (arity is not None and len(node.args) != arity):
                raise GraderError(f"calculate_output calls {function} with {len(node.args)} arguments.")
            for argument in node.args:
                if isinstance(argument, ast.Starred):
                    raise GraderError("calculate_output may not unpack arguments.")
                self._check(argument, names)
        else:
            raise GraderError(
                f"calculate_output may only use numbers, grader names, + - * / ^ and "
                f"{', '.join(_FUNCTIONS)}; not {type(node).__name__}."
            )

    def _eval(self, node: ast.AST, scores: Mapping[str, float]) -> float:
        # Only the node types `_check` let through can be here.
        if isinstance(node, ast.Constant):
            return _real(node.value)
        if isinstance(node, ast.Name):
            return float(scores[node.id])
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, scores), self._eval(node.right, scores)
            return _real(_BINARY[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp):
            return _real(_UNARY[type(node.op)](self._eval(node.operand, scores)))
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        function = _FUNCTIONS[node.func.id][0]
        return _real(function(*(self._eval(argument, scores) for argument in node.args)))


def _real(value: object) -> float:
    # A negative number to a fractional power is complex in Python: not a score.
    if not isinstance(value, int | float):
        raise ValueError(f"{value} is not a real number")
    return float(value)
