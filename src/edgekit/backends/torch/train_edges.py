"""torch -> torch edges that apply training recipes (core/training.py): structured channel pruning,
magnitude (unstructured) pruning and knowledge distillation. Each builds the changed model from the
source (the teacher), trains it (train_loop.py) on the data's training split, writes it as a
``torch.export`` program (``model.pt2``, opened as the next edge's live module) and leaves
``training.json`` beside it (core/prepare.py puts it in the manifest and the records)."""
from __future__ import annotations

import copy
import hashlib

import numpy as np

from ...core.artifacts import write_json
from ...core.graph import Converter


class _TrainingEdge(Converter):
    prepares = True
    uses_data = True
    requires = (("torch", "torch"),)
    tools = ("torch",)
    use_labels = True  # may learn from the data's labels (pruning); distillation learns from the teacher alone

    @classmethod
    def key_material(cls, ctx):
        arrays, labels, what = ctx.data.training_split()
        h = hashlib.sha256(what.encode() + ctx.data.task.encode())
        for k in sorted(arrays):
            h.update(k.encode() + np.ascontiguousarray(arrays[k]).tobytes())
        if labels is not None:
            h.update(np.ascontiguousarray(labels).tobytes())
        return h.hexdigest()[:24]

    def student(self, teacher, example: tuple, settings) -> tuple[object, dict]:
        raise NotImplementedError

    def finish(self, student, changes: dict) -> object:
        return student

    def convert(self, artifact, out_dir, ctx):
        import torch

        from ...core.terminal import say
        from .channels import parameter_count
        from .train_loop import fit

        src, settings = ctx.source, ctx.recipe.training
        teacher = artifact.obj
        example = tuple(torch.from_numpy(np.ascontiguousarray(src.example[s.name])) for s in src.inputs)
        torch.manual_seed(settings.seed)
        student, changes = self.student(teacher, example, settings)
        arrays, labels, what = ctx.data.training_split()
        say(f"[edgekit] {ctx.recipe.name}: training on {what} ({self.name()}; training costs time, cached after)")
        summary = fit(student, teacher, arrays, labels, src, settings, ctx.data.task, ctx.recipe.name,
                              say, self.use_labels)
        student = self.finish(student, changes).eval()
        path = out_dir / "model.pt2"
        with torch.no_grad():
            program = torch.export.export(student, example)
        torch.export.save(program, str(path))
        before, after = parameter_count(teacher), parameter_count(student)
        record = {"data": what, "parameters_before": before, "parameters_after": after,
                  "weights_bytes_before": _bytes(teacher), "weights_bytes": _bytes(student), **changes, **summary}
        write_json(out_dir / "training.json", record)
        ctx.notes.append(f"{ctx.recipe.name}: {before} -> {after} parameters; {summary['epochs_run']} epochs "
                         f"({summary['loss']} loss), validation cosine to the source "
                         f"{summary['validation']['cosine_mean']:.4f}")
        return path


def _bytes(module) -> int:
    return int(sum(t.numel() * t.element_size() for t in module.state_dict().values()))


class PruneStructured(_TrainingEdge):
    """Remove the lowest-L1 channels (channels.py), then fine-tune."""

    src, dst = "torch", "torch"
    recipes = frozenset({"prune-structured"})

    def student(self, teacher, example, settings):
        from .channels import shrink

        return shrink(teacher, example, settings.amount, settings.multiple_of)


class PruneMagnitude(_TrainingEdge):
    """Zero the smallest-magnitude weights of every convolution and linear layer (per layer), fine-tune
    with the zeros held, then make them plain weights. The tensors stay dense: see ``NOTE``."""

    src, dst = "torch", "torch"
    recipes = frozenset({"prune-magnitude"})
    NOTE = ("unstructured sparsity: the zeros are stored as dense weights, so the exported model and every "
            "artifact made from it keep the source's size (only a compressed download shrinks), and the "
            "runtimes here run dense kernels, so latency does not drop; prune-structured removes whole channels")

    def student(self, teacher, example, settings):
        from torch import nn
        from torch.nn.utils import prune

        model = copy.deepcopy(teacher).eval()
        layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))]
        for _, m in layers:
            prune.l1_unstructured(m, "weight", amount=settings.amount)
        return model, {"layers_pruned": [name for name, _ in layers]}

    def finish(self, student, changes):
        from torch.nn.utils import prune

        total = zeros = 0
        for name, m in student.named_modules():
            if name in changes["layers_pruned"]:
                prune.remove(m, "weight")
                total += m.weight.numel()
                zeros += int((m.weight == 0).sum())
        changes["sparsity"] = round(zeros / max(total, 1), 4)
        changes["note"] = self.NOTE
        return student


class DistillStudent(_TrainingEdge):
    """A smaller student trained to match the teacher: the teacher at a width multiplier (its
    lowest-L1 channels removed, as a start) and/or fewer of its repeated blocks (students.py)."""

    src, dst = "torch", "torch"
    recipes = frozenset({"distill"})
    use_labels = False

    def student(self, teacher, example, settings):
        from .students import make_student

        return make_student(teacher, example, settings)
