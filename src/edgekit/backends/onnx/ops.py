"""Operator checks on ONNX graphs shared by the edges that read ONNX."""
from __future__ import annotations

from pathlib import Path

from ...core.errors import UnsupportedOperator

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def op_types(path: Path) -> list[tuple[str, str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    seen, out = set(), []

    def visit(graph):
        for node in graph.node:
            key = (node.domain, node.op_type)
            if key not in seen:
                seen.add(key)
                out.append(key)
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model.graph)
    return out


def check_standard_ops(path: Path, edge: str) -> None:
    """Raise UnsupportedOperator for an operator outside the standard ONNX domains."""
    import onnx

    for domain, op in op_types(path):
        if domain not in STANDARD_DOMAINS:
            raise UnsupportedOperator(edge, f"{domain}::{op}", "custom-domain operator")
        if domain in ("", "ai.onnx") and not onnx.defs.has(op):
            raise UnsupportedOperator(edge, op, "not an ONNX operator")
