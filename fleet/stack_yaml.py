"""A stack file read as the Pulumi CLI reads it, so that `make plan` gives the program what `pulumi up` gives it.

The CLI (pulumi/pulumi, sdk/go/common/workspace/loaders.go LoadProjectStackBytes and
sdk/go/common/resource/config/{value,object,plaintext}.go) reads the file with Go's gopkg.in/yaml.v3 (v3.0.1):

1. It decodes the whole file into Go values, re-encodes it as YAML (after prefixing keys without a namespace with the
   project's name) and decodes that into its config map. A map with a key that is not a string is refused
   ("expected only string keys"); so is a key given twice ("mapping key ... already defined").
2. A top-level value of `null`, `~` or nothing is passed as "" (with a warning); a `{secure: <ciphertext>}` map is a
   secret; any other value is an object.
3. The program gets each top-level value as text: a string as it is, a bool or number as its JSON (`true`, `8192`,
   `0.85`), anything else as JSON (Go's encoding/json: keys sorted, no spaces) with the secrets inside decrypted.
   A NaN or infinite number cannot be JSON: the CLI refuses the stack.

Scalars are resolved by yaml.v3's resolve.go, not by YAML 1.1 (PyYAML) nor quite by YAML 1.2's core schema:
- quoted or block (`|`, `>`) scalars and those tagged `!!str` are strings; so is every plain scalar not listed here;
- `true True TRUE false False FALSE` are bools; `yes`, `no`, `on`, `off`, `y`, `n` are strings;
- `~ null Null NULL` and nothing are null;
- `.inf .Inf .INF` (signed too) and `.nan .NaN .NAN` are floats;
- a plain scalar starting with a digit, `+` or `-` is, first that matches: a timestamp (`2024-1-2`,
  `2024-01-02T10:00:00Z`, `2024-01-02 10:00:00`); an integer with Go's ParseInt base 0 after removing every `_`
  (`0x2000` = 8192, `0o17` and the YAML 1.1 `017` = 15 octal, `0b101` = 5, `1_000` = 1000), or an unsigned one up to
  2^64-1; a float matching `[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?` that is finite (`1e3`, `08` = 8.0,
  `1.` = 1.0); else a string;
- a plain scalar starting with `.` is a float where it is `.digits` with an optional exponent (`.85`); else a string;
- sexagesimal numbers are not supported: `19:00` is the string "19:00";
- a timestamp, decoded into an untyped value, is passed as Go's time.String(): `2024-01-02 00:00:00 +0000 UTC`
  (times with another offset print it twice, `-0500 -0500`, as on a machine whose local zone is UTC);
- an explicit `!!int`, `!!float`, `!!bool`, `!!null` or `!!timestamp` tag must match what the text resolves to
  (`!!float 1` is 1.0); other tags leave the text a string; `<<` merges maps (explicit keys win).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import json
import math
import re
from typing import Any, Callable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_PLAIN = "?plain"  # the tag this reader gives an untagged plain scalar: the only kind yaml.v3 resolves
_TAG = "tag:yaml.org,2002:"
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = ("", "~", "null", "Null", "NULL")
_SPECIAL_FLOATS = {**{s: math.nan for s in (".nan", ".NaN", ".NAN")},
                   **{s: math.inf for s in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
                   **{s: -math.inf for s in ("-.inf", "-.Inf", "-.INF")}}
_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_DOT_FLOAT = re.compile(r"^\.[0-9]+([eE][-+]?[0-9]+)?$")  # what Go's ParseFloat takes of a text starting with "."
# Go's strconv.ParseInt(s, 0, 64) syntax: sign, then a 0x/0o/0b prefix, a leading 0 (octal) or decimal digits.
_GO_INT = re.compile(r"^(?P<sign>[+-]?)(?:0[xX](?P<hex>[0-9a-fA-F]+)|0[oO](?P<oct>[0-7]+)|0[bB](?P<bin>[01]+)"
                     r"|0(?P<oct1>[0-7]+)|(?P<dec>0|[1-9][0-9]*))$")
_DATE = r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
_CLOCK = r"(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{1,2}):(?P<s>[0-9]{1,2})(?:[.,](?P<frac>[0-9]+))?"
_TIMESTAMPS = (re.compile(f"^{_DATE}[Tt]{_CLOCK}(?P<zone>Z|[+-][0-9]{{2}}:[0-9]{{2}})$"),
               re.compile(f"^{_DATE} {_CLOCK}$"), re.compile(f"^{_DATE}$"))
INT64 = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1


class StackFileError(ValueError):
    """The Pulumi CLI would refuse the file; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class Secret:
    """A `secure:` value: the ciphertext, which only the CLI can decrypt."""

    ciphertext: str


@dataclasses.dataclass(frozen=True)
class Timestamp:
    """A scalar yaml.v3 decodes as time.Time; the program gets its Go String()."""

    text: str


@dataclasses.dataclass(frozen=True)
class ConfigValue:
    """One top-level config value: the decoded tree (Secret leaves where the file says `secure:`)."""

    tree: Any

    @property
    def secure(self) -> bool:
        return any(isinstance(leaf, Secret) for _, leaf in leaves(self.tree))

    def text(self, decrypt: Callable[[str], str]) -> str:
        """What the program gets for it, with each secret decrypted by `decrypt`."""
        value = _plain(self.tree, decrypt)
        if self.tree is None:
            return ""  # a top-level null is passed as "" (the CLI warns that this will become null)
        return value if isinstance(value, str) else go_json(value)


def leaves(tree: Any, path: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every leaf of a decoded tree: a scalar, a Secret, an empty map or list."""
    if isinstance(tree, dict) and tree:
        return [item for key, value in tree.items() for item in leaves(value, f"{path}.{key}" if path else key)]
    if isinstance(tree, list) and tree:
        return [item for index, value in enumerate(tree) for item in leaves(value, f"{path}[{index}]")]
    return [(path, tree)]


class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
              yaml.resolver.BaseResolver):
    """PyYAML's parser and composer without any of its YAML 1.1 resolution: untagged plain scalars are marked, and
    resolved here as yaml.v3 resolves them."""

    def __init__(self, stream: str):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.resolver.BaseResolver.__init__(self)

    def resolve(self, kind, value, implicit):
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def resolve(text: str, tag: str = _PLAIN) -> Any:
    """A scalar as yaml.v3 decodes it into an untyped Go value; `tag` is its explicit tag (`!!int`), else untagged
    plain. Raises StackFileError where the tag does not fit the text."""
    if tag == _PLAIN:
        return _resolve_plain(text, timestamps=True)
    short = _short(tag)
    if short == "!!binary":
        try:
            return base64.b64decode(text.replace("\n", "").replace(" ", ""), validate=True).decode("utf-8", "replace")
        except ValueError:
            raise StackFileError("!!binary value contains invalid base64 data") from None
    if short not in ("!!bool", "!!int", "!!float", "!!null", "!!timestamp"):
        return text  # !!str, and tags yaml.v3 does not resolve: the text
    value = _resolve_plain(text, timestamps=short == "!!timestamp")
    kind = _kind(value)
    if short == "!!float" and kind == "!!int" and INT64[0] <= value <= INT64[1]:
        return float(value)
    if kind != short:
        raise StackFileError(f"cannot decode {kind} `{text}` as a {short}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "!!null"
    return {bool: "!!bool", int: "!!int", float: "!!float", str: "!!str", Timestamp: "!!timestamp"}[type(value)]


def _resolve_plain(text: str, timestamps: bool) -> Any:
    if text in _NULLS:
        return None
    first = text[0]
    if first in "yYnNtTfFoO~":
        return _BOOLS.get(text, text)
    if first == ".":
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
        return _finite_float(text) if _DOT_FLOAT.match(text) else text
    if first not in "+-0123456789":
        return text
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    if timestamps:
        stamp = _timestamp(text)
        if stamp:
            return stamp
    plain = text.replace("_", "")
    number = _go_int(plain)
    if number is not None:
        return number
    if _YAML_STYLE_FLOAT.match(plain):
        value = _finite_float(plain)
        if not isinstance(value, str):
            return value
    return text


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), else ParseUint(text, 0, 64) (which takes no sign); None where neither does."""
    match = _GO_INT.match(text)
    if not match:
        return None
    base, digits = next((b, match[g]) for b, g in ((16, "hex"), (8, "oct"), (2, "bin"), (8, "oct1"), (10, "dec"))
                        if match[g] is not None)
    value = int(digits, base) * (-1 if match["sign"] == "-" else 1)
    if INT64[0] <= value <= INT64[1] or (not match["sign"] and value <= UINT64_MAX):
        return value
    return None


def _finite_float(text: str) -> float | str:
    """Go's ParseFloat: a text out of float64's range is an error, which leaves the scalar a string."""
    value = float(text)
    return value if math.isfinite(value) else text


def _timestamp(text: str) -> Timestamp | None:
    """yaml.v3's parseTimestamp (the layouts 2006-1-2T15:4:5.999999999Z07:00, the same with t, "2006-1-2
    15:4:5.999999999" and 2006-1-2), as Go's time.Time.String() prints it."""
    for layout in _TIMESTAMPS:
        match = layout.match(text)
        if not match:
            continue
        parts = match.groupdict()
        try:
            when = datetime.datetime(int(parts["y"]), int(parts["mo"]), int(parts["d"]), int(parts.get("h") or 0),
                                     int(parts.get("mi") or 0), int(parts.get("s") or 0))
        except ValueError:
            return None
        zone = parts.get("zone") or "Z"
        if zone == "Z" or zone in ("+00:00", "-00:00"):
            offset = "+0000 UTC"
        else:
            if int(zone[1:3]) > 24 or int(zone[4:6]) > 60:
                return None
            offset = f"{zone[0]}{zone[1:3]}{zone[4:6]}"
            offset = f"{offset} {offset}"
        fraction = (parts.get("frac") or "")[:9].rstrip("0")
        return Timestamp(f"{when:%Y-%m-%d %H:%M:%S}{'.' + fraction if fraction else ''} {offset}")
    return None


def _decode(node: Node) -> Any:
    """A node as yaml.v3 decodes it into untyped Go values, then as the CLI keeps it (secrets found)."""
    if isinstance(node, ScalarNode):
        try:
            return resolve(node.value, node.tag)
        except StackFileError as error:
            raise StackFileError(f"line {node.start_mark.line + 1}: {error}") from None
    if isinstance(node, SequenceNode):
        return [_decode(item) for item in node.value]
    if isinstance(node, MappingNode):
        return _mapping(node)
    raise StackFileError(f"line {node.start_mark.line + 1}: an unsupported YAML node")  # pragma: no cover


def _is_merge(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.value == "<<" and node.tag in (_PLAIN, _TAG + "merge")


def _mapping(node: MappingNode) -> dict[str, Any]:
    result: dict[str, Any] = {}
    seen: dict[str, int] = {}
    merged: list[dict[str, Any]] = []
    for key_node, value_node in node.value:
        if _is_merge(key_node):
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise StackFileError(f"line {source.start_mark.line + 1}: map merge requires map or sequence "
                                         f"of maps as the value")
                merged.append(_mapping(source))
            continue
        line = key_node.start_mark.line + 1
        if isinstance(key_node, ScalarNode):
            if key_node.value in seen:
                raise StackFileError(f"line {line}: mapping key {json.dumps(key_node.value)} already defined at "
                                     f"line {seen[key_node.value]}")
            seen[key_node.value] = line
        key = _decode(key_node)
        if not isinstance(key, str):
            raise StackFileError(f"line {line}: expected only string keys, got {_go_text(key)!r}: quote the key")
        result[key] = _decode(value_node)
    for source in merged:  # explicit keys win, then the first merged map that has the key
        for key, value in source.items():
            result.setdefault(key, value)
    return result


def _secrets(tree: Any) -> Any:
    """`{secure: <text>}` maps as Secret (Pulumi's isSecureValue: one key, secure, a string)."""
    if isinstance(tree, dict):
        if set(tree) == {"secure"} and isinstance(tree["secure"], str):
            return Secret(tree["secure"])
        return {key: _secrets(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_secrets(value) for value in tree]
    return tree


def _plain(tree: Any, decrypt: Callable[[str], str]) -> Any:
    if isinstance(tree, Secret):
        return decrypt(tree.ciphertext)
    if isinstance(tree, Timestamp):
        return tree.text
    if isinstance(tree, dict):
        return {key: _plain(value, decrypt) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_plain(value, decrypt) for value in tree]
    if isinstance(tree, float) and tree == 0:
        return 0  # the YAML the CLI re-encodes writes -0.0 as -0, which decodes as the integer 0
    return tree


def _go_float(value: float) -> str:
    """Go's encoding/json float64: shortest digits, fixed notation from 1e-6 to below 1e21, else 1e-07 as 1e-7."""
    if not math.isfinite(value):
        raise StackFileError(f"json: unsupported value: {_go_text(value)}")
    if value == 0 or 1e-6 <= abs(value) < 1e21:
        return format(decimal.Decimal(repr(value)).normalize(), "f")
    text = repr(value)
    return re.sub(r"e-0(\d)$", r"e-\1", text)


def _go_text(value: Any) -> str:
    """Go's %v of a decoded scalar (how the CLI names it in a message)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"
    return value.text if isinstance(value, Timestamp) else str(value)


def go_json(value: Any) -> str:
    """Go's json.Marshal of a decoded value: map keys sorted, no spaces, Go's float format."""
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}:{go_json(v)}" for k, v in sorted(value.items()))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def read(text: str, project: str) -> dict[str, ConfigValue]:
    """The config of a stack file's text: full key (`<namespace>:<name>`; the project's namespace where none is
    written) -> its value. Raises StackFileError where the Pulumi CLI refuses the file."""
    try:
        loader = _Loader(text)
        try:
            root = loader.get_node() if loader.check_node() else None  # the first document: Unmarshal reads no further
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise StackFileError(f"invalid YAML file: {error}") from None
    if root is None:
        return {}
    document = _decode(root)
    if document is None:
        return {}
    if not isinstance(document, dict):
        shape = "a list" if isinstance(document, list) else _kind(document)
        raise StackFileError(f"must be a stack file: a map with a `config:` map (expected project to be an object, "
                             f"was {shape})")
    config = document.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise StackFileError("must be a stack file: a map with a `config:` map of keys to values")
    result: dict[str, ConfigValue] = {}
    written: dict[str, str] = {}
    for key, value in config.items():
        full = key if ":" in key else f"{project}:{key}"
        if full.count(":") > 2 or (full.count(":") == 2 and full.split(":")[1] != "config"):
            raise StackFileError(f"could not parse {full} as a configuration key (configuration keys should be of "
                                 f"the form `<namespace>:<name>`)")
        if full.count(":") == 2:
            namespace, _, name = full.split(":")
            full = f"{namespace}:{name}"
        if full in result:
            raise StackFileError(f"config key {full} is given twice, as {written[full]} and {key}: the Pulumi CLI "
                                 f"keeps either one")
        written[full] = key
        result[full] = ConfigValue(_secrets(value))
        result[full].text(lambda ciphertext: "")  # a NaN or infinite number fails here, as in the CLI
    return result

