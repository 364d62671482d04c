"""The engine of tests/test_api_models.py: a planned resource's inputs, mapped to the API request fields they become,
each value checked against the cloud's own model of that field (docs/api-models.md).

A cloud's model (aws.py, gcp.py, azure.py) answers `field("<api>:<root>.Member[].Sub")` with a Field: what the
model says of that request field. A Resource says where a resource type's inputs go: an input path (`a.b[].c`,
`*` for any key of a map) maps to an API path, a child of a mapped input maps to the API field of the same name
(case aside), and an input with neither is reported: a new input forces the question of where it goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field as dataclass_field
from functools import cached_property
from typing import Any, Callable, Mapping

SHOWN_SECRET = "[secret]"  # what the plan shows of a secret input (fleet/errors.py): its value is not checked


class Field:
    """One field of an API request as the cloud's model describes it. `kind`: structure, list, map, string,
    integer, number, boolean or any; for a list, min/max_length count its items."""

    def __init__(self, where: str, kind: str, *, members: Callable[[], Mapping[str, "Field"]] | None = None,
                 item: Callable[[], "Field"] | None = None, required: frozenset[str] = frozenset(),
                 readonly: bool = False, enum: tuple[str, ...] | None = None, enum_any_case: bool = False,
                 min_length: int | None = None, max_length: int | None = None, pattern: str | None = None,
                 minimum: float | None = None, maximum: float | None = None, number_as_string: bool = False):
        self.where, self.kind = where, kind
        self._members, self._item = members, item
        self.required, self.readonly = required, readonly
        self.enum, self.enum_any_case = enum, enum_any_case
        self.min_length, self.max_length, self.pattern = min_length, max_length, pattern
        self.minimum, self.maximum = minimum, maximum
        # GCP's int64 fields are strings on the wire: the provider sends the number as its decimal string.
        self.number_as_string = number_as_string

    @cached_property
    def members(self) -> Mapping[str, "Field"]:
        return self._members() if self._members else {}

    @cached_property
    def item(self) -> "Field":
        assert self._item, f"{self.where} is a {self.kind}, not a list or map"
        return self._item()

    def child(self, segment: str) -> "Field | None":
        """`[]` an item of a list, `{}` a value of a map, else the member of that name (case aside)."""
        if segment in ("[]", "{}"):
            return self.item if self.kind in ("list", "map") else None
        if segment in self.members:
            return self.members[segment]
        folded = {name.lower(): f for name, f in self.members.items()}
        return folded.get(segment.lower())

    def member_name(self, segment: str) -> str:
        return next((name for name in self.members if name.lower() == segment.lower()), segment)

    def __repr__(self) -> str:
        return f"Field({self.where}, {self.kind})"


def compiled(pattern: str) -> re.Pattern:
    """A model's pattern as Python's re reads it: Java's \\p{..} classes, \\z and UTF-16 surrogate pairs (the
    astral planes) have no re spelling."""
    translated = pattern
    for java, python in JAVA_REGEX.items():
        translated = translated.replace(java, python)
    return _compile(translated)


JAVA_REGEX = {r"\p{L}": "a-zA-Z\u00c0-\uffff", r"\p{Z}": " ", r"\p{N}": "0-9", r"\p{ASCII}": r"\x00-\x7f",
              r"\z": r"\Z", r"\uD800\uDC00-\uDBFF\uDFFF": r"\U00010000-\U0010FFFF"}
_patterns: dict[str, re.Pattern] = {}


def _compile(pattern: str) -> re.Pattern:
    if pattern not in _patterns:
        _patterns[pattern] = re.compile(pattern, re.DOTALL)
    return _patterns[pattern]


def problems_of(value: Any, f: Field) -> list[str]:
    """What the model refuses of one value (its children are checked by the walk)."""
    if value is None or value == SHOWN_SECRET:
        return []
    if f.readonly:
        return [f"{f.where} is read-only: the API ignores or refuses it in a request"]
    if f.kind == "any":
        return []
    if f.kind == "structure":
        return [] if isinstance(value, dict) else [f"{f.where} wants an object, not {value!r}"]
    if f.kind in ("list", "map"):
        if not isinstance(value, (list, dict)) or (f.kind == "list") != isinstance(value, list):
            return [f"{f.where} wants a {f.kind}, not {value!r}"]
        return _bounds(len(value), f.min_length, f.max_length, f"{f.where} holds {len(value)} items")
    if f.kind == "boolean":
        return [] if isinstance(value, bool) else [f"{f.where} wants a boolean, not {value!r}"]
    if f.kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                f.kind == "integer" and float(value) != int(value)):
            return [f"{f.where} wants an {f.kind}, not {value!r}"]
        return _bounds(value, f.minimum, f.maximum, f"{f.where} = {value!r}")
    if f.kind == "string":
        if isinstance(value, (dict, list)):
            return [f"{f.where} wants a string, not {value!r}"]
        if f.number_as_string and isinstance(value, (int, float)) and not isinstance(value, bool):
            if float(value) != int(value):
                return [f"{f.where} wants an integer (as its decimal string), not {value!r}"]
            return _bounds(value, f.minimum, f.maximum, f"{f.where} = {value!r}")
        text = _as_sent(value)
        found = []
        if f.enum is not None:
            known = {e.lower() for e in f.enum} if f.enum_any_case else set(f.enum)
            if (text.lower() if f.enum_any_case else text) not in known:
                found.append(f"{f.where} = {text!r} is none of {', '.join(f.enum)}")
        found += _bounds(len(text), f.min_length, f.max_length, f"{f.where} {text[:80]!r} has {len(text)} characters")
        if f.pattern and not compiled(f.pattern).fullmatch(text):
            found.append(f"{f.where} {text[:80]!r} does not match {f.pattern}")
        return found
    raise AssertionError(f"{f.where}: unknown kind {f.kind}")


def _as_sent(value: Any) -> str:
    """A scalar as the provider puts it in a string field (attribute values, labels): booleans lower case."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bounds(value: float, lo: float | None, hi: float | None, what: str) -> list[str]:
    if lo is not None and value < lo:
        return [f"{what}, under its minimum {lo:g}"]
    if hi is not None and value > hi:
        return [f"{what}, over its maximum {hi:g}"]
    return []


# --- where a resource type's inputs go ----------------------------------------------------------------------
@dataclass(frozen=True)
class Pairs:
    """A map input the provider sends as a list of key/value objects (AWS tags, GCP metadata items): each key is
    checked against `key`, each value against `value` (API paths of the list item's members)."""
    key: str
    value: str


@dataclass(frozen=True)
class Attribute:
    """An input the provider sends as one `Key`/`Value` item of an attribute list (ELB attributes): the item's
    `key_member` is the constant `key`, its `value_member` the input."""
    item: str
    key_member: str
    key: str
    value_member: str = "Value"


@dataclass(frozen=True)
class ProviderOnly:
    """An input with no API counterpart: the provider's own setting. `why` says what it does instead."""
    why: str


@dataclass(frozen=True)
class Sent:
    """An input the provider changes before sending it to `path` (a boolean that becomes an enum, a list joined
    with commas, a list of named objects that becomes a map): `how` is that change, as the provider's source makes
    it; the changed value's members are mapped as an input's would be."""
    path: str
    how: Callable[[Any], Any]


@dataclass(frozen=True)
class Spread:
    """An object or list input that has no API field itself: each of its members is mapped on its own."""


@dataclass(frozen=True)
class Calls:
    """A list input whose every item becomes a request of its own (a route table's routes: one CreateRoute each)."""
    api: str


Target = str | Pairs | Attribute | ProviderOnly | Sent | Spread | Calls


@dataclass(frozen=True)
class Resource:
    """Where a resource type's inputs go. `api`: the request its inputs become by default ("<api>:<root>");
    `fields`: input path -> API path (absolute "<api>:<root>.A.B" or relative to `api`) or a special target;
    `name`: the API path of the name the provider generates when no input sets it (autonaming); `supplied`:
    API paths the provider fills itself (an id another call returned, a constant), with why."""
    api: str
    fields: Mapping[str, Target] = dataclass_field(default_factory=dict)
    name: str | None = None
    supplied: Mapping[str, str] = dataclass_field(default_factory=dict)


def autoname(logical: str) -> str:
    """What a bridged Terraform provider (AWS, GCP) names a resource that sets no name: the logical name, "-" and
    7 random hex digits."""
    return f"{logical}-0a1b2c3"


class Model:
    """A cloud's API models, each loaded once. Subclasses answer `root(api, root)`."""

    def __init__(self, autoname: Callable[[str], str]):
        self.autoname = autoname
        self._fields: dict[str, Field | None] = {}
        self._roots: dict[tuple[str, str], Field] = {}

    def root(self, api: str, root: str) -> Field:
        raise NotImplementedError

    def field(self, path: str) -> Field | None:
        """The Field at an absolute API path "<api>:<root>.Member[].Sub", None where the model has none."""
        if path not in self._fields:
            head, _, rest = path.partition(":")
            root, *segments = split_path(rest)
            if (head, root) not in self._roots:
                self._roots[head, root] = self.root(head, root)
            f: Field | None = self._roots[head, root]
            for segment in segments:
                f = f.child(segment) if f else None
            self._fields[path] = f
        return self._fields[path]


def split_path(path: str) -> list[str]:
    """"Root.A.B[].C{}" -> ["Root", "A", "B", "[]", "C", "{}"] (a root has no dots: "instanceTemplates/insert")."""
    return re.findall(r"\[\]|\{\}|[^.\[\]{}]+", path)


def prefixes_of(path: str) -> list[str]:
    """The API paths that hold `path`: "a:R.X.Y[].Z" -> "a:R", "a:R.X", "a:R.X.Y", "a:R.X.Y[]"."""
    return [path[:m.start()] for m in re.finditer(r"\.|\[\]|\{\}", path)]


def absolute(resource: Resource, path: str) -> str:
    return path if ":" in path else f"{resource.api}.{path}" if path else resource.api


def input_key(path: str, key: str, parent: Field | None) -> str:
    return f"{path}.*" if parent is not None and parent.kind == "map" else (f"{path}.{key}" if path else key)


@dataclass
class Check:
    """The outcome for one planned resource: unmapped inputs, values the model refuses, required members missing."""
    type_: str
    name: str
    problems: list[str] = dataclass_field(default_factory=list)
    hits: set[str] = dataclass_field(default_factory=set)  # API paths the inputs reached ([] / {} for items)


def check_resource(model: Model, resource: Resource, type_: str, logical: str, inputs: dict[str, Any]) -> Check:
    check = Check(type_, logical)
    root = model.field(resource.api)
    assert root is not None, f"{type_}: {resource.api} is not in the model"
    _walk(model, resource, check, inputs, "", resource.api, root)
    if resource.name and not any(h == absolute(resource, resource.name) for h in check.hits):
        name_path = absolute(resource, resource.name)
        name_field = model.field(name_path)
        assert name_field is not None, f"{type_}: {name_path} is not in the model"
        check.hits.add(name_path)
        check.problems += [f"autonamed: {p}" for p in problems_of(model.autoname(logical), name_field)]
    check.hits |= {absolute(resource, p) for p in resource.supplied}
    check.problems += _missing_required(model, check.hits)
    check.problems = [f"{type_} {logical}: {p}" for p in check.problems]
    return check


def _walk(model: Model, resource: Resource, check: Check, value: Any, path: str, api_path: str | None,
          f: Field | None) -> None:
    """Checks the input `value` at input path `path`; `f` is the API field a same-named input would reach."""
    target = resource.fields.get(path) if path else None
    if isinstance(target, ProviderOnly):
        return
    if isinstance(target, Pairs):
        _pairs(model, resource, check, value, path, target)
        return
    if isinstance(target, Attribute):
        item = absolute(resource, target.item)
        for member, v in ((target.key_member, target.key), (target.value_member, value)):
            _leaf(model, check, v, f"{item}.{member}", path)
        return
    if isinstance(target, Sent):  # the changed value is checked, and walked, where it goes
        value, target = target.how(value), target.path
    if isinstance(target, (Spread, Calls)):
        calls = model.field(target.api) if isinstance(target, Calls) else None
        children = value.items() if isinstance(value, dict) else (("[]", v) for v in value or ())
        for key, child in children:
            child_path = f"{path}{key}" if key == "[]" else f"{path}.{key}"
            _walk(model, resource, check, child, child_path, target.api if calls else None, calls)
        return
    if isinstance(target, str):
        api_path = absolute(resource, target)
        f = model.field(api_path)
        if f is None:
            check.problems.append(f"input {path} maps to {api_path}, which the model does not have")
            return
    if f is None or api_path is None:
        check.problems.append(f"input {path} has no mapping to an API field: map it in tests/api_models/ "
                              f"or list it as provider-only with why")
        return
    check.hits.add(api_path)
    check.problems += [f"input {path}: {p}" for p in problems_of(value, f)]
    if isinstance(value, dict) and value != SHOWN_SECRET:
        for key, child in value.items():
            segment = "{}" if f.kind == "map" else f.member_name(key)
            child_field = f.child("{}" if f.kind == "map" else key) if f.kind in ("map", "structure", "any") else None
            if f.kind == "any":
                continue  # a free-form object (an extension's settings): the model says nothing of its members
            _walk(model, resource, check, child, input_key(path, key, f), f"{api_path}.{segment}", child_field)
    elif isinstance(value, list) and f.kind == "list":
        for child in value:
            _walk(model, resource, check, child, f"{path}[]", f"{api_path}[]", f.item)


def _leaf(model: Model, check: Check, value: Any, api_path: str, path: str) -> None:
    f = model.field(api_path)
    if f is None:
        check.problems.append(f"input {path} maps to {api_path}, which the model does not have")
        return
    check.hits.add(api_path)
    check.problems += [f"input {path}: {p}" for p in problems_of(value, f)]


def _pairs(model: Model, resource: Resource, check: Check, value: Any, path: str, target: Pairs) -> None:
    key_path, value_path = absolute(resource, target.key), absolute(resource, target.value)
    items = key_path.rsplit(".", 1)[0]
    assert items.endswith("[]"), f"{target}: the key and value must be members of a list's item"
    listed = model.field(items[:-2])
    if listed is not None and isinstance(value, dict):
        check.hits.add(items[:-2])
        check.problems += [f"input {path}: {p}" for p in problems_of(list(value), listed)]
    for key, v in (value or {}).items() if isinstance(value, dict) else ():
        _leaf(model, check, key, key_path, f"{path} key {key!r}")
        _leaf(model, check, v, value_path, f"{path}.{key}")


def _missing_required(model: Model, hits: set[str]) -> list[str]:
    """Each object a request holds must have its required members: checked for every object an input reached."""
    missing = []
    for prefix in sorted({p for h in hits for p in prefixes_of(h)} | hits):
        f = model.field(prefix)
        if f is None or f.kind != "structure":
            continue
        for member in sorted(f.required):
            wanted = f"{prefix}.{member}"
            if not any(h == wanted or h.startswith(wanted + ".") or h.startswith(wanted + "[") for h in hits):
                missing.append(f"{wanted} is required and no input or the provider sets it")
    return missing
