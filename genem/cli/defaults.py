"""Flags default to ``None`` so that the engine's defaults apply; their help shows those defaults with the unit
read from the name (``voltage_kV`` -> "(default: 300 kV)")."""
from __future__ import annotations

import dataclasses
import inspect

# name suffix -> unit, longest first
UNITS = (("_e_per_A2", "e/A^2"), ("_A2", "A^2"), ("_kV", "kV"), ("_mrad", "mrad"), ("_deg", "deg"), ("_mm", "mm"),
         ("_nm", "nm"), ("_px", "px"), ("_A", "A"), ("_V", "V"))


def unit_of(name: str) -> str:
    return next((unit for suffix, unit in UNITS if name.endswith(suffix)), "")


def with_default(text: str, value, unit: str = "") -> str:
    """``text`` followed by "(default: VALUE UNIT)"; ranges print as low,high; no note for ``None``."""
    if value is None:
        return text
    if isinstance(value, (tuple, list)):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    elif isinstance(value, float):
        value = f"{value:g}"
    return f"{text} (default: {value}{' ' + unit if unit else ''})".lstrip()


def config_default(cls, field: str):
    f = next(f for f in dataclasses.fields(cls) if f.name == field)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def config_help(cls, field: str, text: str = "") -> str:
    """Help for a flag that sets ``cls.field``: ``text`` and the config's default with its unit."""
    return with_default(text, config_default(cls, field), unit_of(field))


def add_config_flags(parser, cls, options) -> None:
    """Add ``options`` (``(flag, config field, type, help)`` rows) to ``parser``, each defaulting to ``None`` so that
    ``cls``'s default applies, with that default and its unit in the help; :func:`given_fields` collects them."""
    for flag, field, typ, text in options:
        parser.add_argument(flag, dest=field, type=typ, default=None, help=config_help(cls, field, text))


def given_fields(args, options) -> dict:
    """The config fields of ``options`` (see :func:`add_config_flags`) whose flags were given."""
    return given(args, *(field for _, field, _, _ in options))


def keyword_help(fn, name: str, text: str = "", unit: str | None = None) -> str:
    """Help for a flag passed to ``fn`` as keyword ``name``: ``text`` and ``fn``'s default."""
    return with_default(text, inspect.signature(fn).parameters[name].default, unit_of(name) if unit is None else unit)


def given(args, *names, **renamed) -> dict:
    """The flags that were given (are not ``None``) as keywords: ``names`` keep their dest, ``keyword=dest`` renames."""
    pairs = {**{n: n for n in names}, **renamed}
    return {k: getattr(args, dest) for k, dest in pairs.items() if getattr(args, dest) is not None}
