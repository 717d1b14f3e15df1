"""The base of GenEM's configurations: frozen dataclasses that reject unknown keys.

A subclass is declared ``@dataclass(frozen=True) class XConfig(Config)`` and validates itself in
``__post_init__``. Construction, :meth:`Config.from_dict` and :meth:`Config.replace` all refuse a key that is not
a field, with a :class:`GenemInputError` that names it and lists the valid ones. A field whose default is a
nested ``Config`` is rebuilt from a dict by ``from_dict``; ``to_dict`` is JSON-ready (tuples become lists).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from genem.io.errors import GenemInputError


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Frozen configuration; see the module docstring."""

    config_name: ClassVar[str] = "config"  # how errors name this configuration

    def __new__(cls, *args, **kwargs):
        cls.check_keys(kwargs)
        return super().__new__(cls)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def check_keys(cls, keys, source=None) -> None:
        """Raise :class:`GenemInputError` (from ``source``, default the config's name) on keys that are not fields."""
        valid = cls.field_names()
        unknown = sorted(set(keys) - set(valid))
        if unknown:
            raise GenemInputError(source or cls.config_name,
                                  f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")

    @classmethod
    def from_dict(cls, d: dict, source=None):
        """Build from a (JSON) dict: lists become tuples, nested configs are rebuilt from their dicts. ``source``
        (e.g. the file the dict came from) names the input in errors."""
        cls.check_keys(d, source)
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            nested = f.default_factory if f.default_factory is not dataclasses.MISSING else None
            if isinstance(v, dict) and isinstance(nested, type) and issubclass(nested, Config):
                v = nested.from_dict(v, source)
            elif isinstance(v, list):
                v = tuple(v)
            kw[f.name] = v
        return cls(**kw)

    def replace(self, **changes):
        """A copy with ``changes`` applied (and validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (nested configs as dicts, tuples as lists)."""
        return _json_ready(dataclasses.asdict(self))
