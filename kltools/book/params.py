"""Parameter files (``params/<profile>.yaml``) and the parameters a chapter runs with."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kltools.book.layout import CHAPTERS, PROFILES, chapter_name, params_path
from kltools.errors import KLToolsError

#: keys allowed at the top level of a profile parameter file
_PROFILE_FILE_KEYS = {"profile", "description", "common", "chapters"}


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; one-line errors for the user's mistakes."""
    p = Path(path)
    if not p.is_file():
        raise KLToolsError(f"parameter file not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise KLToolsError(f"parameter file {p} is not valid YAML{where}: {problem}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise KLToolsError(f"parameter file {p} must hold a mapping, not {type(doc).__name__}")
    return doc


def is_profile_file(doc: Mapping[str, Any]) -> bool:
    """Whether a parameter document is a full profile file (``common``/``chapters``) or flat."""
    return "common" in doc or "chapters" in doc


def validate_profile_doc(doc: Mapping[str, Any], source: str | Path) -> str:
    """Check the structure of a profile parameter file and return its profile name."""
    unknown = sorted(set(doc) - _PROFILE_FILE_KEYS)
    if unknown:
        raise KLToolsError(
            f"{source}: unknown top-level key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_PROFILE_FILE_KEYS))}"
        )
    profile = doc.get("profile")
    if profile not in PROFILES:
        raise KLToolsError(
            f"{source}: 'profile' must be one of {', '.join(PROFILES)}, not {profile!r}"
        )
    for key in ("common", "chapters"):
        if not isinstance(doc.get(key) or {}, dict):
            raise KLToolsError(f"{source}: '{key}' must be a mapping")
    chapters = doc.get("chapters") or {}
    bad = sorted(set(chapters) - set(CHAPTERS))
    if bad:
        raise KLToolsError(
            f"{source}: unknown chapter section(s) {', '.join(bad)}; known: {', '.join(CHAPTERS)}"
        )
    for name, section in chapters.items():
        if not isinstance(section or {}, dict):
            raise KLToolsError(f"{source}: chapters.{name} must be a mapping")
    common_profile = (doc.get("common") or {}).get("profile", profile)
    if common_profile != profile:
        raise KLToolsError(
            f"{source}: common.profile {common_profile!r} differs from profile {profile!r}"
        )
    return str(profile)


def load_profile(profile: str, path: str | Path | None = None) -> dict[str, Any]:
    """Load and validate the parameter file of ``profile`` (``params/<profile>.yaml`` by default)."""
    if profile not in PROFILES:
        raise KLToolsError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    source = Path(path) if path is not None else params_path(profile)
    doc = load_yaml_mapping(source)
    if not is_profile_file(doc):
        raise KLToolsError(f"{source}: a profile file needs 'common' and/or 'chapters' sections")
    found = validate_profile_doc(doc, source)
    if found != profile:
        raise KLToolsError(f"{source} is for profile {found!r}, not {profile!r}")
    return doc


@dataclass(frozen=True)
class DeclaredParameter:
    """A parameter declared in a notebook's ``parameters`` cell."""

    name: str
    type_name: str  # "int", "float", "str", "bool", "list", "dict", "None" (unknown)
    default: str  # the source text of the default value


def declared_parameters(nb_path: str | Path) -> dict[str, DeclaredParameter]:
    """The parameters a notebook declares in its cell tagged ``parameters`` (papermill's view)."""
    import nbformat
    import papermill

    path = Path(nb_path)
    if not path.is_file():
        raise KLToolsError(f"notebook not found: {path}")
    nb = nbformat.read(path, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise KLToolsError(f"{path} has no cell tagged 'parameters'")
    found = papermill.inspect_notebook(str(path))
    out: dict[str, DeclaredParameter] = {}
    for name, info in found.items():
        type_name = str(info.get("inferred_type_name") or "None")
        default = str(info.get("default") or "")
        if type_name == "None":
            type_name = _literal_type(default)
        out[name] = DeclaredParameter(name, type_name, default)
    return out


def _literal_type(source: str) -> str:
    """The type name of a literal default (``"1000"`` -> ``"int"``); ``"None"`` if unknown."""
    try:
        value = ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "None"
    return "None" if value is None else type(value).__name__


def _check_type(chapter: str, name: str, value: Any, type_name: str) -> None:
    """Reject a value whose type cannot stand for the declared one (``1e3`` in YAML is a str)."""
    base = type_name.split("[")[0].strip().lower()
    ok: dict[str, tuple[type, ...]] = {
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "str": (str,),
        "list": (list, tuple),
        "tuple": (list, tuple),
        "dict": (dict,),
    }
    allowed = ok.get(base)
    if allowed is None or value is None:
        return
    if (base in ("int", "float") and isinstance(value, bool)) or not isinstance(value, allowed):
        raise KLToolsError(
            f"chapter {chapter!r}: parameter {name!r} should be {base}, got {value!r} "
            f"({type(value).__name__}); note YAML reads 1e3 as a string, write 1000 or 1.0e+3"
        )


def settings_fields() -> frozenset[str]:
    """The names of :class:`kltools.config.Settings`: the parameters the library knows."""
    from dataclasses import fields

    from kltools.config import Settings

    return frozenset(f.name for f in fields(Settings))


def resolve_parameters(
    name: str,
    doc: Mapping[str, Any],
    declared: Mapping[str, DeclaredParameter],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters chapter ``name`` runs with.

    ``common`` (every key: the parameters the chapters share are declared there once, so
    every chapter computes a setting with the same values; ``profile`` is the file's
    profile), then ``chapters.<name>`` (every key must be declared by the chapter), then
    ``overrides`` (a flat mapping from ``kltools book chapter``; every key must be declared by
    the chapter or be a common parameter). A key of ``common`` must be a parameter the library
    knows (a :class:`kltools.config.Settings` field) or one the chapter declares. Values are
    type-checked against the notebook's defaults and the settings' types.
    """
    from kltools.config import Settings

    chapter = chapter_name(name)
    profile = doc.get("profile")
    common = {"profile": profile, **(doc.get("common") or {})}
    section = dict((doc.get("chapters") or {}).get(chapter) or {})
    extra = dict(overrides or {})
    known = settings_fields()
    unknown = sorted(set(common) - known - set(declared))
    if unknown:
        raise KLToolsError(
            f"chapter {chapter!r}: unknown common parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    for label, layer, allowed in (
        ("chapters." + chapter, section, set(declared)),
        ("parameter file", extra, set(declared) | known),
    ):
        unknown = sorted(set(layer) - allowed)
        if unknown:
            raise KLToolsError(
                f"chapter {chapter!r}: unknown parameter(s) {', '.join(unknown)} in {label}; "
                f"the notebook declares: {', '.join(declared) or 'none'}"
            )
    params = {**common, **section, **extra}
    for key, value in params.items():
        if key in declared:
            _check_type(chapter, key, value, declared[key].type_name)
    try:
        Settings.from_parameters(params)
    except KLToolsError as exc:
        raise KLToolsError(f"chapter {chapter!r}: {exc}") from None
    return params
