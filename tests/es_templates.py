"""Composable index templates and ILM policies for the Elasticsearch stand-in (tests/es_standin.py).

Shapes as in Elasticsearch 8.x:

* ``PUT _index_template/<name>`` (reference/current/indices-put-template.html): body with ``index_patterns``
  (required), ``template.{settings, mappings, aliases}``, ``priority``, ``data_stream``, ``composed_of``,
  ``version``, ``_meta``; answers ``{"acknowledged": true}``. ``?create=true`` and the name taken: 400
  ``illegal_argument_exception`` "index template [<name>] already exists". Two templates of one priority whose
  patterns can match one name: 400 ``illegal_argument_exception`` (MetadataIndexTemplateService's text, "index
  template [a] has index patterns [...] matching patterns from existing templates [b] with patterns (b => [...])
  that have the same priority [N], multiple index templates may not match during index creation, please use a
  different priority"). Not modelled: component templates (``composed_of`` is kept, unused).
* ``GET|HEAD _index_template/<name>`` (reference/current/indices-get-template.html): ``{"index_templates":
  [{"name", "index_template": {index_patterns, template, composed_of, priority?, data_stream?, version?,
  _meta?}}]}``; an unknown name: 404 ``resource_not_found_exception`` "index template matching [<name>] not
  found" (HEAD: 404, no body).
* ``PUT _ilm/policy/<name>`` (reference/current/ilm-put-lifecycle.html): body ``{"policy": {"phases": ...,
  "_meta"?}}``; answers ``{"acknowledged": true}``.
* ``GET _ilm/policy/<name>`` (reference/current/ilm-get-lifecycle.html): ``{"<name>": {"version",
  "modified_date", "policy", "in_use_by": {"indices", "data_streams", "composable_templates"}}}``; unknown:
  404 ``resource_not_found_exception`` "Lifecycle policy not found: <name>".
* An index or data stream created by a write takes the settings and mappings of the matching template with the
  highest priority (reference/current/index-templates.html); a template with ``data_stream`` makes it a data
  stream. ES 8's built-in ``logs-*-*`` template has priority 100: a user template above it wins.
"""

from __future__ import annotations

import copy
import datetime as dt
import fnmatch
from dataclasses import dataclass, field
from typing import Any

JsonObj = dict[str, Any]
BUILTIN_PRIORITY = 100  # ES 8's logs-*-*, metrics-*-*, synthetics-*-* templates


class TemplateError(Exception):
    def __init__(self, status: int, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error_type, self.reason = status, error_type, reason


@dataclass
class Policy:
    body: JsonObj
    version: int
    modified: str


@dataclass
class Templates:
    """The cluster's index templates and ILM policies (the stand-in holds its lock around every call)."""

    index_templates: dict[str, JsonObj] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)

    # ------------------------------------------------------------------ index templates

    def put_template(self, name: str, body: Any, create: bool) -> JsonObj:
        if not isinstance(body, dict) or not isinstance(body.get("index_patterns"), list | str):
            raise TemplateError(400, "action_request_validation_exception",
                                "Validation Failed: 1: index patterns are missing;")
        if create and name in self.index_templates:
            raise TemplateError(400, "illegal_argument_exception", f"index template [{name}] already exists")
        stored = copy.deepcopy(body)
        if isinstance(stored["index_patterns"], str):
            stored["index_patterns"] = [stored["index_patterns"]]
        self._check_overlap(name, stored)
        stored.setdefault("composed_of", [])
        if "data_stream" in stored:
            stored["data_stream"] = {"hidden": False, "allow_custom_routing": False, **(stored["data_stream"] or {})}
        self.index_templates[name] = stored
        return {"acknowledged": True}

    def _check_overlap(self, name: str, body: JsonObj) -> None:
        priority = int(body.get("priority") or 0)
        clashes = {other: theirs["index_patterns"] for other, theirs in sorted(self.index_templates.items())
                   if other != name and int(theirs.get("priority") or 0) == priority
                   and any(globs_meet(p, q) for p in body["index_patterns"] for q in theirs["index_patterns"])}
        if clashes:
            mine = ", ".join(body["index_patterns"])
            theirs = ", ".join(f"{other} => [{', '.join(patterns)}]" for other, patterns in clashes.items())
            names = ", ".join(clashes)
            raise TemplateError(400, "illegal_argument_exception",
                                f"index template [{name}] has index patterns [{mine}] matching patterns from existing "
                                f"templates [{names}] with patterns ({theirs}) that have the same priority "
                                f"[{priority}], multiple index templates may not match during index creation, please "
                                "use a different priority")

    def get_template(self, name: str) -> JsonObj:
        matched = sorted(n for n in self.index_templates if fnmatch.fnmatchcase(n, name))
        if not matched:
            raise TemplateError(404, "resource_not_found_exception", f"index template matching [{name}] not found")
        return {"index_templates": [{"name": n, "index_template": copy.deepcopy(self.index_templates[n])}
                                    for n in matched]}

    def for_new_index(self, index: str, builtin_data_stream: bool) -> tuple[bool, JsonObj, JsonObj] | None:
        """(data stream, settings, mappings) of the template a new ``index`` takes; None: the built-in one or
        none applies (the caller's default)."""
        best: tuple[int, JsonObj] | None = None
        for body in self.index_templates.values():
            if any(fnmatch.fnmatchcase(index, p) for p in body["index_patterns"]):
                priority = int(body.get("priority", 0))
                if best is None or priority > best[0]:
                    best = (priority, body)
        if best is None or (builtin_data_stream and best[0] <= BUILTIN_PRIORITY):
            return None
        template = best[1].get("template") or {}
        return ("data_stream" in best[1], copy.deepcopy(template.get("settings") or {}),
                copy.deepcopy(template.get("mappings") or {}))

    # ------------------------------------------------------------------ ILM policies

    def put_policy(self, name: str, body: Any) -> JsonObj:
        if not isinstance(body, dict) or not isinstance(body.get("policy"), dict):
            raise TemplateError(400, "x_content_parse_exception", "[1:2] Required [policy]")
        for phase in (body["policy"].get("phases") or {}).values():
            if isinstance(phase, dict):
                phase.setdefault("min_age", "0ms")  # ES stores and answers every phase with its min_age
        old = self.policies.get(name)
        modified = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self.policies[name] = Policy(copy.deepcopy(body["policy"]), old.version + 1 if old else 1, modified)
        return {"acknowledged": True}

    def get_policy(self, name: str, users: tuple[list[str], list[str]]) -> JsonObj:
        """``users``: (indices, data streams) whose settings name the policy."""
        policy = self.policies.get(name)
        if policy is None:
            raise TemplateError(404, "resource_not_found_exception", f"Lifecycle policy not found: {name}")
        templates = sorted(n for n, body in self.index_templates.items() if lifecycle_name(body) == name)
        return {name: {"version": policy.version, "modified_date": policy.modified,
                       "policy": copy.deepcopy(policy.body),
                       "in_use_by": {"indices": users[0], "data_streams": users[1],
                                     "composable_templates": templates}}}


def lifecycle_name(template_body: JsonObj) -> str | None:
    """``index.lifecycle.name`` of a template, written nested or flat."""
    settings = (template_body.get("template") or {}).get("settings") or {}
    return setting(settings, "index.lifecycle.name")


def setting(settings: JsonObj, dotted: str) -> Any:
    """A setting of an index's settings, written nested (``{"index": {"lifecycle": ...}}``) or flat."""
    if dotted in settings:
        return settings[dotted]
    node: Any = settings
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return None
        rest = ".".join(parts[i:])
        if rest in node:
            return node[rest]
        node = node.get(part)
    return node


def globs_meet(p: str, q: str) -> bool:
    """Whether some name matches both patterns (``*`` the only wildcard, as in index patterns)."""
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(p) and j == len(q):
            return True
        if i < len(p) and p[i] == "*":
            todo.append((i + 1, j))  # p's star matches nothing more
            if j < len(q):
                todo.append((i, j + 1))  # it takes q's next character (or q's star takes nothing)
        elif j < len(q) and q[j] == "*":
            todo.append((i, j + 1))
            if i < len(p):
                todo.append((i + 1, j))
        elif i < len(p) and j < len(q) and p[i] == q[j]:
            todo.append((i + 1, j + 1))
    return False
