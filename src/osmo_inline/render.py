"""Step 3: template + values -> spec text, by OSMO's Jinja rules, offline.

OSMO renders every spec with a sandboxed Jinja2 and StrictUndefined, taking values from the
template's `default-values` first, then from the command line. We do the same here, with
the payload among the values, and drop `default-values` from the result (as OSMO's own
dry-run does): the rendered file holds no template variables any more, only OSMO's special
tokens (`{{workflow_id}}`, `{{output}}`, ...), which are substituted per task at run time and
so are left literal.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import re
from collections.abc import Mapping, Sequence
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from types import CodeType
from typing import Any, NamedTuple

import jinja2
import yaml
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from osmo_inline.artifacts import write_atomically
from osmo_inline.errors import BadInput

# OSMO's run-time tokens: only recognised written exactly like this, without spaces.
SPECIAL_TOKEN = re.compile(
    r"\{\{(?:workflow_id|output|uuid|(?:input|host):[A-Za-z0-9_-]+)\}\}"
)
JINJA_MARKERS = ("{{", "{%", "{#")
DEFAULTS_KEY = "default-values"
_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:", re.MULTILINE)
_PLACEHOLDER = "\ue000{}\ue000"  # private-use characters: never in a real spec
_PLACEHOLDERS = re.compile("\ue000([0-9]+)\ue000")
# A value lands inside a double-quoted YAML string; these would end it or change its meaning
# (U+0085, U+2028 and U+2029 are line breaks to YAML),
# and Jinja markers would break OSMO's second render.
_UNSAFE_CHARS = re.compile('["\\\\\x00-\x1f\x7f\x85\u2028\u2029]')
# libyaml's loader when present: the pure-Python one spends most of a dry-run on the payload.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """yaml.safe_load, with the C loader when the installed PyYAML has it."""
    return yaml.load(text, Loader=_YAML_LOADER)


# A NamedTuple, as the client's other records: a dataclass costs a millisecond to define.
class Template(NamedTuple):
    path: Path
    body: str  # the template text without its default-values section
    defaults: dict[str, object]
    variables: frozenset[str]  # every variable the body uses
    code: CodeType  # the body compiled by Jinja, special tokens swapped for placeholders
    tokens: tuple[str, ...]  # the special tokens, in placeholder order


_ENVIRONMENT_OPTIONS: dict[str, Any] = {"undefined": StrictUndefined,
                                        "keep_trailing_newline": True}


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(**_ENVIRONMENT_OPTIONS)


def template_cache_dir() -> Path:
    """Compiled templates: `$XDG_CACHE_HOME/osmo-inline/templates` (~/.cache by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base, "osmo-inline", "templates")


def _compile(text: str) -> tuple[CodeType, frozenset[str]]:
    """Jinja's code for `text` and the variables it uses, from the cache when compiled before.

    Lexing, parsing and generating code cost a dry-run more than the rest of its work; the
    result depends only on the text, Jinja, Python and the environment's options, so it is
    kept on disk under a hash of all four (as Python keeps byte code). A cache that cannot be
    read or written is only slower. TemplateSyntaxError propagates."""
    identity = "\0".join((jinja2.__version__, MAGIC_NUMBER.hex(),
                           repr(sorted(_ENVIRONMENT_OPTIONS.items())), text))
    cached = None
    try:
        cached = template_cache_dir() / f"{hashlib.sha256(identity.encode()).hexdigest()}.marshal"
        code, variables = marshal.loads(cached.read_bytes())
        if isinstance(code, CodeType):
            return code, frozenset(variables)
    except (OSError, RuntimeError, EOFError, ValueError, TypeError):
        pass  # not compiled yet, a damaged entry or no home directory: compile (again)
    environment = _environment()
    parsed = environment.parse(text)
    code = environment.compile(parsed)
    variables = frozenset(meta.find_undeclared_variables(parsed))
    if cached is not None:
        try:
            cached.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomically(cached, marshal.dumps((code, sorted(variables))))
        except OSError:
            pass
    return code, variables


def protect_special_tokens(text: str) -> tuple[str, list[str]]:
    """Swap OSMO's tokens for placeholders Jinja ignores; returns the text and the tokens."""
    tokens: list[str] = []

    def swap(match: re.Match[str]) -> str:
        tokens.append(match.group(0))
        return _PLACEHOLDER.format(len(tokens) - 1)

    return SPECIAL_TOKEN.sub(swap, text), tokens


def _restore_special_tokens(text: str, tokens: Sequence[str]) -> str:
    # One pass over the text, whatever the number of tokens: it holds the payload.
    return _PLACEHOLDERS.sub(lambda match: tokens[int(match.group(1))], text)


def split_sections(text: str) -> dict[str, str]:
    """Top-level sections by `key:` lines at column 0, as OSMO's server splits a spec."""
    starts = [(m.start(), m.group(1)) for m in _TOP_LEVEL_KEY.finditer(text)]
    sections = {"": text[: starts[0][0]] if starts else text}  # leading comments
    for (start, key), (end, _) in zip(starts, starts[1:] + [(len(text), "")], strict=True):
        sections[key] = text[start:end]
    return sections


def load_template(path: Path) -> Template:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"workflow template not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"cannot read workflow template {path}: {error}") from None
    sections = split_sections(text)
    defaults_text = sections.pop(DEFAULTS_KEY, "")
    try:
        loaded = load_yaml(defaults_text) if defaults_text else None
    except yaml.YAMLError as error:
        raise BadInput(f"{path}: default-values is not valid YAML: {_one_line(error)}") from None
    defaults = (loaded or {}).get(DEFAULTS_KEY) or {}
    if not isinstance(defaults, dict):
        raise BadInput(f"{path}: default-values must be a mapping of name: value")
    body = "".join(sections.values())
    protected, tokens = protect_special_tokens(body)
    try:
        code, variables = _compile(protected)
    except TemplateSyntaxError as error:
        raise BadInput(f"{path}:{error.lineno}: template syntax error: {error.message}") from None
    return Template(path, body, {str(k): v for k, v in defaults.items()}, variables, code,
                    tuple(tokens))


def unsafe_value_reason(value: str) -> str | None:
    """Why a user value cannot be placed in the spec, or None when it can.

    OSMO's special tokens are allowed (`experiment_name=run-{{workflow_id}}`): OSMO substitutes
    them in the task's environment at run time."""
    if any(marker in SPECIAL_TOKEN.sub("", value) for marker in JINJA_MARKERS):
        return "contains Jinja syntax ({{, {% or {#), which OSMO would try to render"
    if _UNSAFE_CHARS.search(value):
        return "contains a double quote, backslash, control character or line break"
    return None


def render(
    template: Template, user_values: Mapping[str, object], filled: Mapping[str, str]
) -> str:
    """Spec text: the body rendered with defaults, then user values, then client values."""
    for name, value in user_values.items():
        reason = unsafe_value_reason(str(value))
        if reason is not None:
            raise BadInput(f"value of {name} {reason}: {value!r}")
    values = {**template.defaults, **user_values, **filled}
    try:
        environment = _environment()
        compiled = environment.template_class.from_code(
            environment, template.code, environment.make_globals(None))
        rendered = compiled.render(values)
    except TemplateError as error:
        raise BadInput(
            f"{template.path}: {_one_line(error)} (set it after -- as key=value, or give it "
            "a default in default-values)"
        ) from None
    return _restore_special_tokens(rendered, template.tokens)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
