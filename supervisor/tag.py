"""The ``tag`` log-opt: Docker's log tag template, rendered once per logger as Docker's own drivers render it.

Docker parses ``tag`` as a Go text/template (moby ``daemon/logger/loggerutils/log_tag.go: ParseLogTag``) with the
functions of ``daemon/logger/templates/templates.go`` and executes it on the logger's ``Info``
(``daemon/logger/loginfo.go``). Python has no Go templates, so this module implements the subset a tag needs:

- text, and actions ``{{ ... }}`` (with ``{{-``/``-}}`` trimming and ``{{/* comments */}}``);
- the Info's methods ``.ID .FullID .Name .ImageID .ImageFullID .ImageName .Hostname .Command`` and
  ``(.ExtraAttributes nil)``; its fields ``.ContainerID .ContainerName .ContainerImageID .ContainerImageName
  .ContainerLabels .ContainerEntrypoint .ContainerArgs .Config .LogPath .DaemonName`` (``.Config`` with its secrets
  masked); map keys (``.ContainerLabels.app``);
- pipelines ``{{.Name | upper}}`` (the piped value is the last argument, as in Go), parentheses, string and integer
  literals, ``nil``;
- Docker's template functions ``upper lower title truncate pad json split join`` and Go's ``index``.

Anything else (``if``, ``range``, variables, ``printf``, ``.ContainerEnv``, ``.ContainerCreated``...) is refused at
StartLogging naming ``tag``. ``.ContainerEnv`` is refused on purpose: the environment is never kept (secrets).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proto.options import redacted_config, user_regex

MAX_TAG = 4096  # characters of a rendered tag; it goes into every document of the container
NO_VALUE = "<no value>"  # what Go prints for a missing map key
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+)|(?P<field>(?:\.[A-Za-z_]\w*)+)'
                    r"|(?P<dot>\.)|(?P<ident>[A-Za-z_]\w*)|(?P<punct>[|()])|(?P<other>\S))")
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
# Info fields Docker's templates can reach that the plugin does not offer, and why.
_REFUSED_FIELDS = {
    "ContainerEnv": "the environment is never kept (it holds secrets)",
    "ContainerCreated": "not supported by this plugin",
}
_STRING_FIELDS = ("ContainerID", "ContainerName", "ContainerImageID", "ContainerImageName", "LogPath", "DaemonName")


class TagError(ValueError):
    pass


# --- parsing --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    kind: str  # "field", "call", "lit", "pipe", "dot"
    value: Any = None
    args: tuple[Node, ...] = ()
    chain: tuple[str, ...] = ()


def parse_tag(template: str) -> str:
    """Check a template (the ``tag`` option's parser); returns it unchanged. Raises ValueError."""
    _parse(template)
    return template


def _parse(template: str) -> list[str | Node]:
    parts: list[str | Node] = []
    pos, trim_next = 0, False
    for match in _ACTION.finditer(template):
        text, body = template[pos:match.start()], match.group(1)
        if trim_next:
            text = text.lstrip()
        if body[:2] in {"- ", "-\t", "-\n"}:
            text, body = text.rstrip(), body[2:]
        trim_next = body[-2:] in {" -", "\t-", "\n-"}
        if trim_next:
            body = body[:-2]
        parts.append(text)
        stripped = body.strip()
        if not (stripped.startswith("/*") and stripped.endswith("*/")):
            parts.append(_parse_action(stripped))
        pos = match.end()
    rest = template[pos:]
    if "{{" in rest:
        raise ValueError("has an unclosed action ({{ without }})")
    parts.append(rest.lstrip() if trim_next else rest)
    return parts


def _parse_action(body: str) -> Node:
    tokens = _tokens(body)
    if not tokens:
        raise ValueError("has an empty action {{}}")
    node, pos = _pipeline(tokens, 0)
    if pos != len(tokens):
        raise ValueError(f"has an unexpected {tokens[pos][1]!r} in {{{{{body[:100]}}}}}")
    return node


def _tokens(body: str) -> list[tuple[str, str]]:
    tokens = []
    for match in _TOKEN.finditer(body):
        kind = match.lastgroup or "other"
        text = match.group(kind)
        if kind == "other":
            what = "variables" if text == "$" else repr(text)
            raise ValueError(f"uses {what}, which this plugin's tag templates do not support")
        if kind == "ident" and text in _KEYWORDS:
            raise ValueError(f"uses {{{{{text}}}}}, which this plugin's tag templates do not support")
        tokens.append((kind, text))
    return tokens


def _pipeline(tokens: list[tuple[str, str]], pos: int) -> tuple[Node, int]:
    node, pos = _command(tokens, pos, None)
    while pos < len(tokens) and tokens[pos] == ("punct", "|"):
        node, pos = _command(tokens, pos + 1, node)
    return node, pos


def _command(tokens: list[tuple[str, str]], pos: int, piped: Node | None) -> tuple[Node, int]:
    operands: list[Node] = []
    while pos < len(tokens) and tokens[pos] not in {("punct", "|"), ("punct", ")")}:
        operand, pos = _operand(tokens, pos)
        operands.append(operand)
    if not operands:
        raise ValueError("has an empty command in a pipeline")
    head, args = operands[0], tuple(operands[1:]) + ((piped,) if piped else ())
    if head.kind == "call":  # a function name
        return Node("call", head.value, args), pos
    if head.kind == "field" and args:  # a method with arguments: (.ExtraAttributes nil)
        return Node("field", head.value, args, head.chain), pos
    if args:
        raise ValueError("passes arguments to something that is not a function")
    return head, pos


def _operand(tokens: list[tuple[str, str]], pos: int) -> tuple[Node, int]:
    kind, text = tokens[pos]
    if kind == "punct" and text == "(":
        inner, pos = _pipeline(tokens, pos + 1)
        if pos >= len(tokens) or tokens[pos] != ("punct", ")"):
            raise ValueError("has an unclosed parenthesis")
        pos += 1
        if pos < len(tokens) and tokens[pos][0] == "field":  # (.ExtraAttributes nil).KEY
            return Node("pipe", inner, chain=tuple(tokens[pos][1].split(".")[1:])), pos + 1
        return inner, pos
    if kind == "field":
        names = tuple(text.split(".")[1:])
        if names[0] in _REFUSED_FIELDS:
            raise ValueError(f"uses .{names[0]}: {_REFUSED_FIELDS[names[0]]}")
        return Node("field", names[0], chain=names[1:]), pos + 1
    if kind == "str":
        return Node("lit", json.loads(text)), pos + 1
    if kind == "raw":
        return Node("lit", text[1:-1]), pos + 1
    if kind == "num":
        return Node("lit", int(text)), pos + 1
    if kind == "ident":
        if text == "nil":
            return Node("lit", None), pos + 1
        if text in {"true", "false"}:
            return Node("lit", text == "true"), pos + 1
        if text not in FUNCTIONS:
            raise ValueError(f"calls {text!r}; tag templates offer {', '.join(sorted(FUNCTIONS))}")
        return Node("call", text), pos + 1
    if kind == "dot":
        raise ValueError("prints {{.}} (the whole Info); name a field, e.g. {{.Name}}")
    raise ValueError(f"has an unexpected {text!r}")


# --- rendering ------------------------------------------------------------------------------------------------

def render_tag(template: str, info: Mapping[str, Any], hostname: str | None = None) -> str:
    """The tag Docker would give a container with this ``info``. Raises TagError."""
    try:
        ctx = _Info(info, hostname or socket.gethostname())
        text = "".join(part if isinstance(part, str) else _text(_eval(part, ctx)) for part in _parse(template))
    except (ValueError, TypeError) as exc:
        raise TagError(str(exc)) from None
    if len(text) > MAX_TAG:
        raise TagError(f"renders {len(text)} characters; at most {MAX_TAG}")
    return text


class _Info:
    """loginfo.go's Info: its fields from dockerd's JSON, its methods as properties."""

    def __init__(self, info: Mapping[str, Any], hostname: str) -> None:
        self.info, self.hostname = info, hostname

    def get(self, name: str, args: tuple[Any, ...]) -> Any:
        info = self.info
        methods: dict[str, Callable[[], Any]] = {
            "ID": lambda: str(info.get("ContainerID") or "")[:12],
            "FullID": lambda: str(info.get("ContainerID") or ""),
            "Name": lambda: str(info.get("ContainerName") or "").removeprefix("/"),
            "ImageID": lambda: str(info.get("ContainerImageID") or "")[:12],  # "sha256:abcd", as in Docker
            "ImageFullID": lambda: str(info.get("ContainerImageID") or ""),
            "ImageName": lambda: str(info.get("ContainerImageName") or ""),
            "Hostname": lambda: self.hostname,
            "Command": lambda: " ".join([str(info.get("ContainerEntrypoint") or "")]
                                        + [str(a) for a in info.get("ContainerArgs") or ()]),
        }
        if name == "ExtraAttributes":
            if len(args) != 1 or args[0] is not None:
                raise ValueError("calls .ExtraAttributes with other than nil")
            return _extra_attributes(info)
        if args:
            raise ValueError(f"passes arguments to .{name}, which takes none")
        if name in methods:
            return methods[name]()
        if name in _STRING_FIELDS:
            return str(info.get(name) or "")
        if name == "ContainerLabels":
            return dict(info.get(name) or {})
        if name == "Config":  # the log-opts: a tag goes into every document, so never with a password in it
            return redacted_config(info.get(name) or {})
        if name == "ContainerArgs":
            return [str(a) for a in info.get(name) or ()]
        if name == "ContainerEntrypoint":
            return str(info.get(name) or "")
        raise ValueError(f"uses .{name}, which Docker's log Info does not have")


def _extra_attributes(info: Mapping[str, Any]) -> dict[str, str]:
    """loginfo.go's ExtraAttributes(nil): the labels and environment variables the log-opts select. As in Docker,
    ``labels-regex`` only counts when ``labels`` is given too. The environment is the kept part (env/env-regex)."""
    config = info.get("Config") or {}
    labels = info.get("ContainerLabels") or {}
    extra: dict[str, str] = {}
    for key in (config.get("labels") or "").split(","):
        if key and key in labels:
            extra[key] = labels[key]
    if config.get("labels-regex") and config.get("labels"):
        pattern = user_regex(config["labels-regex"])
        extra.update({k: v for k, v in labels.items() if pattern.search(k)})
    env = dict(e.split("=", 1) for e in info.get("ContainerEnv") or () if isinstance(e, str) and "=" in e)
    for key in (config.get("env") or "").split(","):
        if key and key in env:
            extra[key] = env[key]
    if config.get("env-regex"):
        pattern = user_regex(config["env-regex"])
        extra.update({k: v for k, v in env.items() if pattern.search(k)})
    return extra


def _eval(node: Node, ctx: _Info) -> Any:
    if node.kind == "lit":
        return node.value
    if node.kind == "call":
        arity = _ARITY[node.value]
        if len(node.args) not in arity:
            raise ValueError(f"calls {node.value} with {len(node.args)} arguments; it takes {arity[0]}"
                             + (" or more" if len(arity) > 1 else ""))
        return FUNCTIONS[node.value](*[_eval(arg, ctx) for arg in node.args])
    if node.kind == "pipe":
        return _walk(_eval(node.value, ctx), node.chain)
    return _walk(ctx.get(node.value, tuple(_eval(arg, ctx) for arg in node.args)), node.chain)


def _walk(value: Any, chain: tuple[str, ...]) -> Any:
    for key in chain:
        if not isinstance(value, dict):
            raise ValueError(f"looks up .{key} in something that is not a map")
        value = value.get(key, NO_VALUE)
    return value


def _text(value: Any) -> str:
    """How Go's text/template prints a value."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + " ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


# --- Docker's template functions (templates.go) and Go's index -------------------------------------------------

def _string(value: Any, function: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{function} needs a string, got {_text(value)[:50]!r}")
    return value


def _int(value: Any, function: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{function} needs a non-negative number, got {_text(value)[:50]!r}")
    return value


def _title(value: Any) -> str:
    # Go's strings.Title: the first letter of each word upper-cased, the rest left as it is.
    return re.sub(r"(?:^|(?<=[^\w]))(\w)", lambda m: m.group(1).upper(), _string(value, "title"))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _join(items: Any, sep: Any) -> str:
    if not isinstance(items, list):
        raise TypeError("join needs a list (e.g. from split)")
    return _string(sep, "join").join(_string(item, "join") for item in items)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(_string(key, "index"), NO_VALUE)
        elif isinstance(value, list):
            value = value[_int(key, "index")] if _int(key, "index") < len(value) else _raise("index out of range")
        else:
            raise TypeError("index needs a map or a list")
    return value


def _raise(text: str) -> Any:
    raise ValueError(text)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "upper": lambda s: _string(s, "upper").upper(),
    "lower": lambda s: _string(s, "lower").lower(),
    "title": _title,
    "truncate": lambda s, n: _string(s, "truncate")[:_int(n, "truncate")],
    "pad": lambda s, p, q: f"{' ' * _int(p, 'pad')}{s}{' ' * _int(q, 'pad')}" if _string(s, "pad") else "",
    "json": _json,
    "split": lambda s, sep: _string(s, "split").split(_string(sep, "split")) if sep else list(s),
    "join": _join,
    "index": _index,
}

_ARITY: dict[str, tuple[int, ...]] = {"upper": (1,), "lower": (1,), "title": (1,), "truncate": (2,), "pad": (3,),
                                      "json": (1,), "split": (2,), "join": (2,), "index": (2, 3, 4, 5)}


def uses_command(template: str | None) -> bool:
    """Whether rendering needs the command line (kept for re-attach only then: it may hold secrets)."""
    return bool(template) and ".Command" in str(template)
