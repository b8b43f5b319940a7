"""Frozen dataclasses that read a JSON object and write back exactly what they read.

A subclass declares its known keys as fields made with :func:`json_field`; anything else in the
object (and a known key whose value has a shape the field cannot hold) is kept in ``extra``, and
the order of the keys and which of them were present (even as ``null``) in ``json_keys``, so
``Cls.from_json(d).to_json() == d`` for every JSON object ``d``, key order included.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


def json_field(codec=None):
    """A JSON field: None (the value as is), ``tuple`` (a list, held as a tuple), a
    :class:`JsonObject` subclass (an object), or ``(tuple, cls)`` (a list of objects)."""
    return field(default=None, metadata={"codec": codec})


_BAD = object()  # a value of unexpected shape: kept in ``extra`` as it was


def _decode(codec, v):
    if v is None or codec is None:
        return copy.deepcopy(v)
    if codec is tuple:
        return tuple(copy.deepcopy(v)) if isinstance(v, list) else _BAD
    if isinstance(codec, tuple):
        cls = codec[1]
        if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
            return _BAD
        return tuple(cls.from_json(x) for x in v)
    return codec.from_json(v) if isinstance(v, Mapping) else _BAD


def _encode(codec, v):
    if v is None or codec is None:
        return copy.deepcopy(v)
    if codec is tuple:
        return copy.deepcopy(list(v))
    if isinstance(codec, tuple):
        return [x.to_json() for x in v]
    return v.to_json()


@dataclass(frozen=True, kw_only=True)
class JsonObject:
    """A frozen view of a JSON object that writes back exactly what it read.

    ``extra``: the keys no field knows (and values of a shape a field cannot hold), as read;
    ``json_keys``: every key in the order read (which keys were present, even as null)."""
    extra: dict = field(default_factory=dict, repr=False)
    json_keys: tuple = field(default=(), repr=False)

    _codecs: ClassVar[dict[str, Any]]

    @classmethod
    def _fields(cls) -> dict[str, Any]:
        if "_codecs" not in cls.__dict__:
            cls._codecs = {f.name: f.metadata.get("codec") for f in fields(cls) if f.name not in ("extra", "json_keys")}
        return cls._codecs

    @classmethod
    def from_json(cls, d: Mapping):
        if not isinstance(d, Mapping):
            raise TypeError(f"{cls.__name__}.from_json needs a JSON object, not {type(d).__name__}")
        known = cls._fields()
        kw, extra = {}, {}
        for k, v in d.items():
            if k in known:
                value = _decode(known[k], v)
                if value is _BAD:
                    extra[k] = copy.deepcopy(v)
                else:
                    kw[k] = value
            else:
                extra[k] = copy.deepcopy(v)
        return cls(**kw, extra=extra, json_keys=tuple(d))

    def to_json(self) -> dict:
        known = self._fields()
        out = {}
        for k in self.json_keys + tuple(k for k in list(known) + list(self.extra) if k not in self.json_keys):
            if k in known:
                v = getattr(self, k)
                if v is not None:
                    out[k] = _encode(known[k], v)
                elif k in self.extra:
                    out[k] = copy.deepcopy(self.extra[k])
                elif k in self.json_keys:
                    out[k] = None
            elif k in self.extra:
                out[k] = copy.deepcopy(self.extra[k])
        return out

    def get(self, key: str, default=None):
        """A field or an extra key by its JSON name (for keys this module does not know)."""
        if key in self._fields() and getattr(self, key) is not None:
            return getattr(self, key)
        return self.extra.get(key, default)
