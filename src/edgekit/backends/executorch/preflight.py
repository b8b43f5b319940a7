"""Pre-flight knowledge of the executorch backend: what a lowered program runs where. A ``.pte``'s
``forward`` plan lists its delegate calls (XNNPACK subgraphs) and the operators left to ExecuTorch's
own kernels (portable/optimized, float); ``edgekit inspect`` reads them from the program itself
(a torch source is lowered once for it, through the conversion cache)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

DELEGATE = "delegate"  # the domain of a delegate call in the facts
QUANT_OPS = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel")


def facts(path: Path) -> dict:
    """{"counts": {(domain, op): calls}} of the program's forward: delegate calls under ``delegate``,
    operators outside any delegate under their namespace (``aten``, ``quantized_decomposed``)."""
    from .stack import import_exir

    import_exir()
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(path).read_bytes()).program
    plan = next((p for p in program.execution_plan if p.name == "forward"), program.execution_plan[0])
    counts: Counter = Counter()
    for chain in plan.chains:
        for ins in chain.instructions:
            args = ins.instr_args
            if hasattr(args, "delegate_index"):
                counts[(DELEGATE, plan.delegates[args.delegate_index].id)] += 1
            elif hasattr(args, "op_index"):
                op = plan.operators[args.op_index]
                ns, _, name = op.name.partition("::")
                counts[(ns, name + (f".{op.overload}" if op.overload else ""))] += 1
    return {"counts": dict(counts), "plan": plan.name}


def judge_runtime(domain: str, op: str, target, recipe, findings) -> list[tuple[str, str]]:
    """Where ExecuTorch runs each entry of a program's plan, and at what precision."""
    if domain == DELEGATE:
        return [("ok", f"a subgraph the {op.replace('Backend', '')} delegate runs")]
    if recipe.kind.startswith("int8") and not op.startswith(QUANT_OPS):
        return [("float", "outside the delegate: ExecuTorch's own kernel, in float")]
    return [("ok", "outside the delegate: ExecuTorch's own kernel")]
