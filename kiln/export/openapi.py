"""Validating what kiln writes for another tool against that tool's own OpenAPI/swagger definitions
(KubeVirt's VirtualMachine, Firecracker's config file): strict, so a field the tool does not define is an
error, and the first error as one line."""

from __future__ import annotations

from typing import Any

from kiln.errors import UsageError


def strict_validator(definitions: dict[str, Any], name: str) -> Any:
    """A Draft 4 validator for definitions[name], with unknown fields refused in every object."""
    import jsonschema

    for schema in definitions.values():
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
    return jsonschema.Draft4Validator({"definitions": definitions, "$ref": f"#/definitions/{name}"})


def validate(validator: Any, document: dict[str, Any], what: str) -> None:
    """Raise UsageError("<what>: WHERE: MESSAGE") for the first error (by path), if any."""
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise UsageError(f"{what}: {where}: {err.message}")
