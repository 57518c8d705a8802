"""Which context variables a template set reads, found from its Jinja AST.

A variable is optional when every read of it is guarded by `is defined` or
`| default(...)`; otherwise a roster must supply it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from jinja2 import FileSystemLoader, TemplateNotFound, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from offerletters.errors import TemplateProblem

__all__ = ["Use", "analyse"]


@dataclass(frozen=True, slots=True)
class Use:
    """Where a template first reads a variable and whether a guard protects it."""

    where: str
    guarded: bool


def analyse(
    env: SandboxedEnvironment,
    loader: FileSystemLoader,
    directory: Path,
    names: Collection[str],
) -> tuple[dict[str, Use], frozenset[str]]:
    """Every variable the templates (and what they include) read from the context.

    Returns each variable's first use, guarded only if every use is, and the
    paths of all template files involved.
    """
    uses: dict[str, Use] = {}
    files: set[str] = set()
    pending = list(names)
    seen = set(pending)
    while pending:
        name = pending.pop(0)
        try:
            source, filename, _ = loader.get_source(env, name)
            ast = env.parse(source, name, filename)
            undeclared = meta.find_undeclared_variables(ast)
        except TemplateNotFound as exc:
            raise TemplateProblem(
                f"{directory}: {name} is included but missing"
            ) from exc
        except TemplateSyntaxError as exc:
            raise TemplateProblem(
                f"{exc.filename or name}, line {exc.lineno}: {exc.message}"
            ) from exc
        except UnicodeDecodeError as exc:
            raise TemplateProblem(f"{directory / name}: not UTF-8 text") from exc

        files.add(filename or name)
        for variable, use in _name_uses(ast, name):
            if variable in undeclared:
                uses[variable] = _merged(uses.get(variable), use)

        for referenced in meta.find_referenced_templates(ast):
            if referenced is None:
                raise TemplateProblem(
                    f"{name}: includes a template chosen at render time;"
                    " name it literally so it can be checked"
                )
            if referenced not in seen:
                seen.add(referenced)
                pending.append(referenced)

    return uses, frozenset(files)


def _merged(earlier: Use | None, later: Use) -> Use:
    """A variable is optional only if no use of it is unguarded."""
    if earlier is None or (earlier.guarded and not later.guarded):
        return later

    return earlier


def _name_uses(
    node: nodes.Node, file: str, safe: frozenset[str] = frozenset()
) -> Iterator[tuple[str, Use]]:
    """Each read of a name in a template, with whether a guard makes it safe.

    `safe` holds the names known to be defined where `node` runs: inside
    `{% if x is defined %}`, the right of `x is defined and ...`, and the like.
    """
    if isinstance(node, nodes.Name):
        if node.ctx == "load":
            where = f"{file} line {node.lineno}"
            yield node.name, Use(where, guarded=node.name in safe)
        return

    guarded = _tested_name(node) or _defaulted_name(node)
    if guarded is not None:
        yield guarded.name, Use(f"{file} line {guarded.lineno}", guarded=True)
        for child in node.iter_child_nodes(exclude=("node",)):
            yield from _name_uses(child, file, safe)
        return

    if isinstance(node, nodes.If | nodes.CondExpr):
        when_true, when_false = _guards(node.test)
        yield from _name_uses(node.test, file, safe)
        for child in _branches(node, taken=True):
            yield from _name_uses(child, file, safe | when_true)
        for child in _branches(node, taken=False):
            yield from _name_uses(child, file, safe | when_false)
        return

    if isinstance(node, nodes.And | nodes.Or):
        when_true, when_false = _guards(node.left)
        # The right side only runs when the left was true (and) or false (or).
        right_safe = when_true if isinstance(node, nodes.And) else when_false
        yield from _name_uses(node.left, file, safe)
        yield from _name_uses(node.right, file, safe | right_safe)
        return

    for child in node.iter_child_nodes():
        yield from _name_uses(child, file, safe)


def _branches(node: nodes.If | nodes.CondExpr, *, taken: bool) -> list[nodes.Node]:
    """The nodes that run when the test is true (taken) or false."""
    if isinstance(node, nodes.If):
        return list(node.body) if taken else [*node.elif_, *node.else_]

    branch = node.expr1 if taken else node.expr2
    return [] if branch is None else [branch]


def _guards(test: nodes.Node) -> tuple[frozenset[str], frozenset[str]]:
    """The names a test proves defined when it is true, and when it is false."""
    name = _tested_name(test)
    if name is not None:
        proved = frozenset({name.name})
        nothing: frozenset[str] = frozenset()
        is_defined = isinstance(test, nodes.Test) and test.name == "defined"
        return (proved, nothing) if is_defined else (nothing, proved)

    if isinstance(test, nodes.Not):
        when_true, when_false = _guards(test.node)
        return when_false, when_true

    if isinstance(test, nodes.And):
        return _guards(test.left)[0] | _guards(test.right)[0], frozenset()

    if isinstance(test, nodes.Or):
        return frozenset(), _guards(test.left)[1] | _guards(test.right)[1]

    return frozenset(), frozenset()


def _tested_name(node: nodes.Node) -> nodes.Name | None:
    """The name in `name is defined` or `name is undefined`, if that is the node."""
    if (
        isinstance(node, nodes.Test)
        and node.name in ("defined", "undefined")
        and isinstance(node.node, nodes.Name)
    ):
        return node.node

    return None


def _defaulted_name(node: nodes.Node) -> nodes.Name | None:
    """The name in `name | default(...)`, which never fails when it is missing."""
    if (
        isinstance(node, nodes.Filter)
        and node.name in ("default", "d")
        and isinstance(node.node, nodes.Name)
    ):
        return node.node

    return None
