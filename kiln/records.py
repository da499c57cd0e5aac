"""The run records' one codec: what kiln writes about running things and reads back.

A run record is a `msgspec.Struct` kiln itself writes: an instance's config and state, a published
port, a volume map, a run's plan (which `kiln-oci create` hands to the container's shim), a
container's state, a background process's pid record. They are read on every `kiln ps`, so they are
Structs (cheap to define and to decode), not pydantic models; what comes from users and registries
(kiln.toml, compose files, manifests) keeps its own validation.

    encode(record) -> bytes          indented JSON, paths as strings
    decode(data, Kind) -> Kind       or BadRecordError (a ValueError) naming what is wrong
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class BadRecordError(ValueError):
    """A record that is not valid JSON, or not of its kind."""


def _enc_hook(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(f"cannot keep a {type(value).__name__} in a run record")


def _dec_hook(kind: type, value: Any) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot read a {kind.__name__} from a run record")


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode(record: object) -> bytes:
    """The record as indented JSON (people read these files too)."""
    return msgspec.json.format(_ENCODER.encode(record), indent=2)


def decode(data: bytes | str, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(data, type=kind, dec_hook=_dec_hook)
    except msgspec.DecodeError as err:  # ValidationError included
        raise BadRecordError(f"not a valid {kind.__name__} record: {err}") from None


def to_builtins(record: object) -> Any:
    """The record as plain dicts and lists (for --json output)."""
    return msgspec.to_builtins(record, enc_hook=_enc_hook)
