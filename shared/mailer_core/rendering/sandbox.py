"""User-written templates rendered in Jinja2's sandbox, with limits, for subjects and bodies.

What a template can do: print variables (`{{ lead.name }}`), use the modifiers of
modifiers.py and Jinja2's harmless built-in filters, `if`, `for`, `set` and macros. What it
cannot do:

- reach Python internals: it runs in `ImmutableSandboxedEnvironment` (no attribute that
  starts with `_`, no mutation of lists or dicts), `str.format` is not reachable, and
  strings offer a short list of harmless methods only. What the sandbox would refuse while
  rendering is refused when the source is compiled too, so a template is refused when it is
  saved, not first at its preview or send: a name starting with `_` (`''.__class__`,
  `cycler.__init__.__globals__`, `self._TemplateReference__context`, a dunder key or an
  `attribute=` of `map`, `sort` …), `.format()`, a call of a method that changes a value
  (`lead.pop()`, `items.append()`), and `include`, `import`, `extends`;
- inject markup through CRM data: bodies are autoescaped, and the ways around it
  (`|safe`, `{% autoescape false %}`, `{% filter safe %}`) are refused when a template is
  saved or rendered; subjects render without escaping (they are plain text) but every line
  break and control character is turned into a space, so CRM data cannot add a header;
- render without end: every render has a budget (`Limits`): output size, the size of any
  one value (so `"x" * 10**9`, `s|replace("", s)` or a doubling macro stop early), loop
  iterations, calls and wall time. The budget is checked at every loop step, call,
  concatenation and output chunk; exceeding it raises `RenderLimitExceeded`.

A sentence that ends in a value ending in an abbreviation's dot gets one full stop, not two:
`до {{ day|date("long") }}.` is «до 24 декабря 2025 г.» in Russian (CLDR's long date ends in
«г.») and "until December 24, 2025." in English. The template's author cannot know which, so
a printed value that ends in a single dot loses it when the template's own text goes on
with a dot (an ellipsis, `..`, is left alone).

Missing values (an unknown variable, an empty CRM field) render as nothing and are
recorded with their full name (`lead.cf["Delivery"]`), so the preview can list them.

Legacy placeholders (`{subject}`, `{triggerlink:8}` …) are translated to Jinja2 first
(legacy_placeholders.py). Trigger links, web pages and forms render as placeholder URLs
under `PLACEHOLDER_BASE` (`https://mailer.invalid/triggerlink/8`, `/web/1028`, `/formlink`,
`/weblink`, `/unsubscribe` for `{{ unsubscribe_url }}` and `{optOutUrl}`; the `.invalid`
top-level domain never resolves). The unsubscribe URL's is a marker the send worker fills in
(rendering.opt_out). A trigger link's is a marker:
the send worker replaces it with the link's click URL and the preview with its target
(trigger_link_urls). Web pages, forms and the web version are markers too, which the send
worker and a trigger's text replace with the email's signed URLs (page_urls, docs/pages.md).

Jinja2 is imported here at module level: import this module lazily (inside functions) from
anything a handler imports at a cold start.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as BUILTIN_FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg, pass_context
from markupsafe import Markup, escape

from mailer_core.rendering import legacy_placeholders, modifiers

PLACEHOLDER_BASE = "https://mailer.invalid"
MAX_SUBJECT_CHARS = 998
MAX_SOURCE_CHARS = 8 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one render may spend."""

    max_output_chars: int = 8 * 1024 * 1024
    max_value_chars: int = 1_000_000
    max_loop_iterations: int = 50_000
    max_calls: int = 50_000
    max_seconds: float = 2.0


DEFAULT_LIMITS = Limits()


class RenderError(Exception):
    """The template cannot be rendered; `reason` says why in words a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RenderLimitExceeded(RenderError):
    """The template went over a limit of `Limits`."""


@dataclass(frozen=True)
class Rendered:
    text: str
    missing: tuple[str, ...] = ()


@dataclass
class _Budget:
    limits: Limits
    deadline: float
    missing: list[str] = field(default_factory=list)
    loops: int = 0
    calls: int = 0

    def note_missing(self, name: str) -> None:
        if name and name not in self.missing:
            self.missing.append(name)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitExceeded(
                f"the template took longer than {self.limits.max_seconds:g} s to render"
            )

    def loop_step(self) -> None:
        self.loops += 1
        if self.loops > self.limits.max_loop_iterations:
            raise RenderLimitExceeded(
                f"the template's loops ran more than {self.limits.max_loop_iterations} times"
            )
        if self.loops % 64 == 0:
            self.check_time()

    def call(self) -> None:
        self.calls += 1
        if self.calls > self.limits.max_calls:
            raise RenderLimitExceeded(f"the template made more than {self.limits.max_calls} calls")
        if self.calls % 16 == 0:
            self.check_time()

    def check_size(self, size: int) -> None:
        if size > self.limits.max_value_chars:
            raise RenderLimitExceeded(
                f"the template built a value longer than {self.limits.max_value_chars} characters"
            )


_budget: ContextVar[_Budget | None] = ContextVar("render_budget", default=None)


def _current() -> _Budget:
    budget = _budget.get()
    if budget is None:  # rendering outside `render` (a bug): give it the default limits
        budget = _Budget(DEFAULT_LIMITS, time.monotonic() + DEFAULT_LIMITS.max_seconds)
        _budget.set(budget)
    return budget


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set | frozenset) else 0


class Missing(ChainableUndefined):
    """A value that is not there: prints as nothing and is recorded by its full name."""

    __slots__ = ()

    def full_name(self) -> str:
        name = self._undefined_name
        if name is None:
            return str(self._undefined_hint or "")
        owner = self._undefined_obj
        path = getattr(owner, "_path", None) if owner is not None else None
        if isinstance(path, str) and path:
            return f"{path}[{name!r}]" if not str(name).isidentifier() else f"{path}.{name}"
        return str(name)

    def _record(self) -> None:
        budget = _budget.get()
        if budget is not None:
            budget.note_missing(self.full_name())

    def __str__(self) -> str:
        self._record()
        return ""

    def __html__(self) -> str:
        self._record()
        return ""

    def __call__(self, *args: Any, **kwargs: Any) -> Missing:  # type: ignore[override]
        return self

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__":
            raise AttributeError(name)
        return Missing(name=f"{self.full_name()}.{name}")

    def __getitem__(self, key: Any) -> Missing:  # type: ignore[override]
        return Missing(name=f"{self.full_name()}[{key!r}]")

    def __iter__(self) -> Iterator[Any]:
        return iter(())


def missing(name: str) -> Missing:
    """A missing value with a full name, for the variables builder to put in the context."""
    return Missing(name=name)


# -- loop, call and size guards -------------------------------------------------------------


@pass_context
def _guard_loop(context: Context, iterable: Any) -> Iterator[Any]:
    budget = _current()
    if isinstance(iterable, Missing):
        return
    for item in iterable:
        budget.loop_step()
        yield item


@pass_context
def _guard_concat(context: Context, parts: list[Any]) -> str:
    eval_ctx = context.eval_ctx
    texts = [p if isinstance(p, str) else str(p) for p in parts]
    _current().check_size(sum(len(t) for t in texts))
    if eval_ctx.autoescape and any(hasattr(p, "__html__") for p in parts):
        return Markup("").join(escape(p) if not hasattr(p, "__html__") else p for p in parts)
    return "".join(texts)


_FORMAT_WIDTH = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(fmt: str) -> None:
    for match in _FORMAT_WIDTH.finditer(fmt):
        for group in match.groups():
            if group == "*" or (group and int(group) > 1000):
                raise RenderLimitExceeded("a format width or precision above 1000 is not allowed")


_STR_METHODS = frozenset(
    {
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "index",
        "isalnum",
        "isalpha",
        "isdecimal",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "join",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "replace",
        "rfind",
        "rindex",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
    }
)


def _replace_size(text: str, old: str, new: str, count: int = -1) -> int:
    occurrences = len(text) + 1 if old == "" else text.count(old)
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * (len(new) - len(old))


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that counts as a call and whose result is size-checked.

    It takes the render's context, which also keeps Jinja2 from running it at compile time
    (constant folding), where it would escape the budget and the render's locale.
    """
    kind = _PassArg.from_obj(function)

    @pass_context
    def run(context: Context, *args: Any, **kwargs: Any) -> Any:
        budget = _current()
        budget.call()
        if kind is _PassArg.context:
            args = (context, *args)
        elif kind is _PassArg.eval_context:
            args = (context.eval_ctx, *args)
        elif kind is _PassArg.environment:
            args = (context.environment, *args)
        try:
            result = function(*args, **kwargs)
        except modifiers.ModifierError as exc:
            raise RenderError(f"|{name}: {exc}") from None
        if isinstance(result, Iterator):
            result = list(result)
        budget.check_size(_size(result))
        return result

    run.__name__ = name
    return run


def _safe_format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_percent_format(str(value))
    return str(BUILTIN_FILTERS["format"](value, *args, **kwargs))


def _bounded(name: str, limit: int, *positions: int) -> Callable[..., Any]:
    """A built-in filter whose numeric arguments at `positions` must stay within `limit`."""
    builtin = BUILTIN_FILTERS[name]
    shift = 1 if hasattr(builtin, "jinja_pass_arg") else 0  # the environment or context comes first
    positions = tuple(p + shift for p in positions)

    def run(*args: Any, **kwargs: Any) -> Any:
        for index in positions:
            if index < len(args) and isinstance(args[index], int) and abs(args[index]) > limit:
                raise RenderLimitExceeded(f"|{name} takes at most {limit} here")
        for value in kwargs.values():
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
                raise RenderLimitExceeded(f"|{name} takes at most {limit} here")
        return builtin(*args, **kwargs)

    if hasattr(builtin, "jinja_pass_arg"):
        run.jinja_pass_arg = builtin.jinja_pass_arg  # type: ignore[attr-defined]
    return run


def _safe_replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: int | None = None) -> Any:
    _current().check_size(_replace_size(str(value), str(old), str(new), -1 if count is None else count))
    return BUILTIN_FILTERS["replace"](eval_ctx, value, old, new, count)


_safe_replace.jinja_pass_arg = BUILTIN_FILTERS["replace"].jinja_pass_arg  # type: ignore[attr-defined]

_ONE_FINAL_DOT = re.compile(r"(?<![.])\.\Z")
_FULL_STOP = "_before_full_stop"


def _before_full_stop(value: Any) -> Any:
    """A value printed right before the template's full stop: without a final dot of its own."""
    text = modifiers.default_text(value)
    if isinstance(text, str) and _ONE_FINAL_DOT.search(text):
        return text[:-1]
    return text


def _one_full_stop(tree: nodes.Template) -> None:
    """Every `{{ value }}` that the template's text follows with a dot (and no second dot)
    prints through `_before_full_stop`, in place."""
    for output in tree.find_all(nodes.Output):
        children = output.nodes
        for index in range(len(children) - 1):
            value = children[index]
            if _full_stop_follows(value, children[index + 1]):
                children[index] = nodes.Filter(value, _FULL_STOP, [], [], None, None, lineno=value.lineno)


def _full_stop_follows(value: nodes.Node, after: nodes.Node) -> bool:
    if isinstance(value, nodes.TemplateData) or not isinstance(after, nodes.TemplateData):
        return False
    return after.data.startswith(".") and not after.data.startswith("..")


# Filters a template may not use: they would mark CRM data as safe HTML or are of no use here.
_REFUSED_FILTERS = {"safe", "attr", "pprint", "xmlattr"}
# Methods that change a list, set or dict (ImmutableSandboxedEnvironment refuses them on render).
_MUTATING_METHODS = frozenset(
    {
        "add", "append", "appendleft", "clear", "difference_update", "discard", "extend", "extendleft",
        "insert", "intersection_update", "pop", "popitem", "popleft", "remove", "reverse", "rotate",
        "setdefault", "sort", "symmetric_difference_update", "update",
    }
)  # fmt: skip
# Filters and tests that read an attribute named by a string (`map(attribute="a.b")`).
_ATTRIBUTE_READERS = frozenset(
    {"map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"}
)


def _refuse_escapes(tree: nodes.Template) -> None:
    """Raise SecurityError, naming the line, for what the sandbox would refuse when rendering."""
    for node in tree.find_all(nodes.Node):
        reason = _escape(node)
        if reason:
            raise SecurityError(f"line {node.lineno}: {reason}")


def _escape(node: nodes.Node) -> str | None:
    """Why `node` reaches past the sandbox, or None."""
    if isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        return "templates cannot include, import or extend other templates"
    if isinstance(node, nodes.Getattr) and _internal(node.attr):
        return f"access to {node.attr!r} is not allowed"
    key = node.arg.value if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) else None
    if isinstance(key, str) and key.startswith("_") and "__" in key:
        return f"access to {key!r} is not allowed"
    method = node.node.attr if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) else None
    if method in _MUTATING_METHODS:
        return f"templates cannot change values ({method}())"
    if isinstance(node, (nodes.Filter, nodes.Test)) and _reads_internal_attribute(node):
        return f"{node.name} may not read attributes starting with _"
    return None


def _internal(attribute: str) -> bool:
    """A Python internal (`_…`), or `str.format`, which reaches any attribute of its arguments."""
    return attribute.startswith("_") or attribute in ("format", "format_map")


def _reads_internal_attribute(node: nodes.Filter | nodes.Test) -> bool:
    """`map(attribute="__class__")` and the like: a filter reading an attribute named by a string."""
    if node.name not in _ATTRIBUTE_READERS:
        return False
    texts = [arg.value for arg in node.args if isinstance(arg, nodes.Const)]
    texts += [kw.value.value for kw in node.kwargs if isinstance(kw.value, nodes.Const)]
    return any(isinstance(t, str) and any(part.startswith("_") for part in t.split(".")) for t in texts)


def _filters() -> dict[str, Callable[..., Any]]:
    chosen: dict[str, Callable[..., Any]] = {
        k: v for k, v in BUILTIN_FILTERS.items() if k not in _REFUSED_FILTERS
    }
    chosen.update(
        format=_safe_format,
        replace=_safe_replace,
        center=_bounded("center", 1000, 1),
        indent=_bounded("indent", 100, 1),
        wordwrap=_bounded("wordwrap", 10_000, 1),
        truncate=_bounded("truncate", 1_000_000, 1),
        batch=_bounded("batch", 1000, 1),
        slice=_bounded("slice", 1000, 1),
        **modifiers.FILTERS,
    )
    guarded = {name: _guarded(name, function) for name, function in chosen.items()}
    guarded["_guard_loop"] = _guard_loop
    guarded["_guard_concat"] = _guard_concat
    guarded[_FULL_STOP] = _before_full_stop
    return guarded


def _budgeted_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > 10_000:
        raise RenderLimitExceeded("range() is limited to 10000 numbers")
    return numbers


def _placeholder(kind: str) -> Callable[..., str]:
    def link(number: Any = None) -> str:
        if number is None:
            return f"{PLACEHOLDER_BASE}/{kind}"
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise RenderError(f"{kind}() takes the number of the {kind}")
        return f"{PLACEHOLDER_BASE}/{kind}/{number}"

    link.__name__ = kind
    return link


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "*", "**", "%", "//"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=Missing,
            finalize=modifiers.default_text,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=0,
            # No constant folding: filters must run at render time, within the render's budget
            # and with its locale (a folded `{{ 1250|money }}` would keep the compiler's).
            optimized=False,
        )
        self.globals = {
            "range": _budgeted_range,
            "dict": dict,
            "cycler": self.globals["cycler"],
            "joiner": self.globals["joiner"],
            "triggerlink": _placeholder("triggerlink"),
            "web": _placeholder("web"),
            "formlink": _placeholder("formlink"),
            "weblink": _placeholder("weblink"),
            # A campaign email's unsubscribe URL: a marker the send filled in (rendering.opt_out).
            "unsubscribe_url": f"{PLACEHOLDER_BASE}/unsubscribe",
        }
        self.filters = _filters()

    # Every For loop goes through the loop guard; every `~` through the concat guard;
    # turning autoescape off is refused.
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for modifier in tree.find_all(nodes.EvalContextModifier):
            if any(option.key == "autoescape" for option in modifier.options):
                raise TemplateSyntaxError("autoescape cannot be turned off", modifier.lineno, name, filename)
        _refuse_escapes(tree)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_guard_loop", [], [], None, None, lineno=loop.lineno)
        _replace_concat(tree)
        _one_full_stop(tree)
        return tree

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr not in _STR_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to {attribute!r} of a {type(obj).__name__} is not allowed")

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is not reachable (is_safe_attribute refuses it)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _current()
        budget.call()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and getattr(__obj, "__name__", "") == "replace" and len(args) >= 2:
            count = args[2] if len(args) > 2 and isinstance(args[2], int) else -1
            budget.check_size(_replace_size(owner, str(args[0]), str(args[1]), count))
        result = super().call(__context, __obj, *args, **kwargs)
        budget.check_size(_size(result))
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _current()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _size(seq) and isinstance(times, int):
                    budget.check_size(_size(seq) * max(times, 0))
            big = isinstance(left, int) and isinstance(right, int)
            if big and left.bit_length() + right.bit_length() > 100_000:
                raise RenderLimitExceeded("the number is too large")
        elif operator == "**":
            whole = isinstance(left, int) and isinstance(right, int)
            if whole and left not in (0, 1, -1) and abs(left).bit_length() * max(right, 0) > 100_000:
                raise RenderLimitExceeded("the power is too large")
        elif operator == "+":
            if _size(left) and _size(right):
                budget.check_size(_size(left) + _size(right))
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        result = super().call_binop(context, operator, left, right)
        budget.check_size(_size(result))
        return result


def _replace_concat(tree: nodes.Node) -> None:
    """Rewrite every `a ~ b` as `[a, b]|_guard_concat`, in place, children first."""
    for child in list(tree.iter_child_nodes()):
        _replace_concat(child)
    for field_name in tree.fields:
        value = getattr(tree, field_name, None)
        if isinstance(value, nodes.Concat):
            setattr(tree, field_name, _concat_filter(value))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, nodes.Concat):
                    value[index] = _concat_filter(item)


def _concat_filter(node: nodes.Concat) -> nodes.Filter:
    items = nodes.List(list(node.nodes), lineno=node.lineno)
    return nodes.Filter(items, "_guard_concat", [], [], None, None, lineno=node.lineno)


@lru_cache(maxsize=2)
def _environment(html: bool) -> _Sandbox:
    return _Sandbox(autoescape=html)


@lru_cache(maxsize=128)
def _compiled(source: str, html: bool) -> Any:
    return _environment(html).from_string(legacy_placeholders.translate(source))


def _syntax_reason(exc: TemplateSyntaxError) -> str:
    where = f"line {exc.lineno}: " if exc.lineno else ""
    return f"template syntax error on {where}{exc.message}"


def check(source: str, *, html: bool) -> None:
    """Raise RenderError when `source` would not compile, or tries what the sandbox refuses
    (for saving a template; `render` checks the same first)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise RenderError("the template is too long")
    try:
        _compiled(source, html)
    except TemplateSyntaxError as exc:
        raise RenderError(_syntax_reason(exc)) from None
    except SecurityError as exc:
        raise RenderError(f"the template tried something that is not allowed: {exc}") from None
    except TemplateError as exc:
        raise RenderError(f"template error: {exc}") from None


def render(
    source: str,
    context: dict[str, Any],
    *,
    html: bool,
    locale: str = "en",
    timezone: str = "UTC",
    currency: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Rendered:
    """Render `source` with `context`; raises RenderError (or RenderLimitExceeded)."""
    check(source, html=html)
    budget = _Budget(limits, time.monotonic() + limits.max_seconds)
    tokens = [
        _budget.set(budget),
        modifiers.current_locale.set(locale),
        modifiers.current_timezone.set(timezone),
        modifiers.current_currency.set(currency),
    ]
    try:
        template = _compiled(source, html)
        chunks: list[str] = []
        total = 0
        for chunk in template.generate(context):
            total += len(chunk)
            if total > limits.max_output_chars:
                raise RenderLimitExceeded(
                    f"the rendered text is longer than {limits.max_output_chars} characters"
                )
            budget.check_time()
            chunks.append(chunk)
        return Rendered("".join(chunks), tuple(budget.missing))
    except RenderError:
        raise
    except SecurityError as exc:
        raise RenderError(f"the template tried something that is not allowed: {exc}") from None
    except TemplateSyntaxError as exc:
        raise RenderError(_syntax_reason(exc)) from None
    except RecursionError:
        raise RenderLimitExceeded("the template calls itself too deeply") from None
    except MemoryError:
        raise RenderLimitExceeded("the template needs too much memory") from None
    except modifiers.ModifierError as exc:
        raise RenderError(str(exc)) from None
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise RenderError(f"the template failed: {type(exc).__name__}: {exc}") from None
    finally:
        for var, token in zip(
            (_budget, modifiers.current_locale, modifiers.current_timezone, modifiers.current_currency),
            tokens,
            strict=True,
        ):
            var.reset(token)  # type: ignore[attr-defined]


_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def one_line(text: str) -> str:
    """Text fit for a header: every line break and control character becomes one space."""
    return re.sub(r" {2,}", " ", _LINE_BREAKS.sub(" ", text)).strip()


def render_subject(source: str, context: dict[str, Any], **options: Any) -> Rendered:
    """A subject: plain text (no escaping), one line, at most 998 characters."""
    rendered = render(source, context, html=False, **options)
    subject = one_line(rendered.text)
    if len(subject) > MAX_SUBJECT_CHARS:
        raise RenderError(f"the subject renders longer than {MAX_SUBJECT_CHARS} characters")
    return Rendered(subject, rendered.missing)


def render_html(source: str, context: dict[str, Any], **options: Any) -> Rendered:
    return render(source, context, html=True, **options)


def names_used(missing: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(missing))
