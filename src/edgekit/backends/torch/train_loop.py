"""The training loop every training recipe shares: the changed model (student) learns from the
data's training split (never its held-out samples), from labels where the data has them and the
recipe lets it, else to match the unchanged model's (teacher's) outputs: KL on softened logits for
classifiers, cosine + MSE for embeddings, MSE otherwise. A seeded share of the training samples is
held back as validation; training stops when its loss has not improved for ``patience`` epochs and
the best epoch's weights are kept. Seeded, one fixed thread count: the same inputs give the same
model. Progress: one line per epoch on the terminal.
"""
from __future__ import annotations

import time

import numpy as np


def _criterion(mode: str, temperature: float):
    from torch.nn import functional as F

    def kl(s, t):
        return F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1),
                        reduction="batchmean") * temperature ** 2

    def cosine(s, t):
        return (1.0 - F.cosine_similarity(s.flatten(1), t.flatten(1), dim=1)).mean() + F.mse_loss(s, t)

    def loss(s, t, y):
        if mode == "labels":  # the labels, and the teacher's soft targets beside them
            return 0.5 * F.cross_entropy(s, y) + 0.5 * kl(s, t)
        if mode == "kl":
            return kl(s, t)
        if mode == "cosine":
            return cosine(s, t)
        return F.mse_loss(s, t)

    return loss


def choose_loss(setting: str, task: str, labels, teacher_out: np.ndarray, use_labels: bool) -> str:
    if setting != "auto":
        return setting
    classifier = teacher_out.ndim == 2 and teacher_out.shape[1] > 1 and task == "classification"
    if classifier:
        return "labels" if (labels is not None and use_labels) else "kl"
    return "cosine" if task == "embedding" else "mse"


def _outputs(model, arrays: dict, names: list, idx, torch, dtypes) -> "torch.Tensor":
    out = model(*[torch.from_numpy(np.ascontiguousarray(arrays[n][idx]).astype(dtypes[n])) for n in names])
    if isinstance(out, dict):
        out = next(iter(out.values()))
    elif isinstance(out, (tuple, list)):
        out = out[0]
    return out


def fit(student, teacher, arrays: dict, labels, source, settings, task: str, label: str, say,
        use_labels: bool = True) -> dict:
    """Train ``student`` in place; returns the summary (losses, epochs, the teacher-vs-student
    comparison on the validation samples)."""
    import torch

    names = [s.name for s in source.inputs]
    dtypes = {s.name: s.dtype for s in source.inputs}
    n = len(arrays[names[0]])
    if settings.max_samples:
        n = min(n, settings.max_samples)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    t0 = time.perf_counter()
    try:
        torch.manual_seed(settings.seed)
        order = np.random.default_rng(settings.seed).permutation(len(arrays[names[0]]))[:n]
        n_val = max(1, int(round(n * settings.val_fraction)))
        val, train = order[:n_val], order[n_val:]
        if len(train) < 1:
            from ...core.errors import DataError

            raise DataError(f"{label}: {n} training sample(s) are too few to train on.", "Pass more data.")
        teacher.eval()
        with torch.no_grad():
            t_out = torch.cat([_outputs(teacher, arrays, names, order[i:i + 256], torch, dtypes).float()
                               for i in range(0, n, 256)])
        t_by = {int(j): k for k, j in enumerate(order)}
        say(f"[edgekit] {label}: the source's outputs on {n} training samples ({time.perf_counter() - t0:.1f} s)")
        mode = choose_loss(settings.loss, task, labels, t_out.numpy(), use_labels)
        y_all = torch.from_numpy(np.asarray(labels).astype(np.int64)) if labels is not None else None
        loss_fn = _criterion(mode, settings.temperature)
        if not settings.train_embeddings:
            for m in student.modules():
                if isinstance(m, torch.nn.Embedding):
                    m.weight.requires_grad_(False)
        opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=settings.lr)
        gen = torch.Generator().manual_seed(settings.seed)

        def batch_loss(idx):
            t = t_out[[t_by[int(j)] for j in idx]]
            y = y_all[idx] if y_all is not None else None
            return loss_fn(_outputs(student, arrays, names, idx, torch, dtypes).float(), t, y)

        def val_loss():
            student.eval()
            with torch.no_grad():
                return float(sum(batch_loss(val[i:i + 256]).item() * len(val[i:i + 256])
                                 for i in range(0, len(val), 256)) / len(val))

        best, best_state, best_epoch, history = val_loss(), _state(student), 0, []
        start_val, waited = best, 0
        for epoch in range(1, settings.epochs + 1):
            student.train()
            total, said = 0.0, time.perf_counter()
            batches = torch.randperm(len(train), generator=gen).split(settings.batch)
            for i, b in enumerate(batches):
                if time.perf_counter() - said > 15.0:  # a long epoch shows it is moving
                    say(f"[edgekit] {label}: epoch {epoch}/{settings.epochs}, batch {i}/{len(batches)} "
                        f"({time.perf_counter() - t0:.0f} s)")
                    said = time.perf_counter()
                idx = train[b.numpy()]
                opt.zero_grad()
                loss = batch_loss(idx)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            v = val_loss()
            history.append({"epoch": epoch, "train_loss": round(total / len(train), 6), "val_loss": round(v, 6)})
            bar = "#" * round(20 * epoch / settings.epochs)
            say(f"[edgekit] {label}: epoch {epoch}/{settings.epochs} [{bar:<20}] loss {total / len(train):.4f} "
                f"val {v:.4f} ({time.perf_counter() - t0:.1f} s)")
            if v < best - 1e-6 * max(1.0, abs(best)):
                best, best_state, best_epoch, waited = v, _state(student), epoch, 0
            else:
                waited += 1
                if waited >= settings.patience:
                    say(f"[edgekit] {label}: validation loss has not improved for {waited} epochs: stopping; "
                        f"keeping epoch {best_epoch}")
                    break
        student.load_state_dict(best_state)
        student.eval()
        with torch.no_grad():
            s_val = _outputs(student, arrays, names, val, torch, dtypes).float().numpy()
        compare = _comparison(t_out[[t_by[int(j)] for j in val]].numpy(), s_val,
                              None if labels is None else np.asarray(labels)[val], mode)
    finally:
        torch.set_num_threads(threads)
    return {"loss": mode, "epochs_run": len(history), "best_epoch": best_epoch,
            "stopped_early": len(history) < settings.epochs, "val_loss_start": round(start_val, 6),
            "val_loss": round(best, 6), "train_samples": int(len(train)), "val_samples": int(n_val),
            "train_seconds": round(time.perf_counter() - t0, 2), "history": history, "validation": compare}


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _comparison(teacher: np.ndarray, student: np.ndarray, labels, mode: str) -> dict:
    """Teacher vs student on the validation samples (part of the training split)."""
    t, s = teacher.reshape(len(teacher), -1), student.reshape(len(student), -1)
    cos = (t * s).sum(1) / np.maximum(np.linalg.norm(t, axis=1) * np.linalg.norm(s, axis=1), 1e-12)
    out = {"samples": int(len(t)), "cosine_mean": round(float(cos.mean()), 6)}
    if mode in ("labels", "kl"):
        out["top1_agreement"] = round(float(np.mean(t.argmax(1) == s.argmax(1))), 6)
        if labels is not None:
            out["teacher_accuracy"] = round(float(np.mean(t.argmax(1) == labels)), 6)
            out["student_accuracy"] = round(float(np.mean(s.argmax(1) == labels)), 6)
    return out
