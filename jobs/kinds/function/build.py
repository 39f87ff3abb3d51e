"""`@kind`: one typed function made into a registered job kind (a JobKind subclass)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Required, TypedDict, TypeVar, Unpack, get_type_hints

from django import forms
from django.core.exceptions import ValidationError
from django.forms.utils import pretty_name

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, ResultDisplay, Spec
from jobs.kinds.function.fields import KindDefinitionError, ParamField, param_field
from jobs.kinds.function.reducers import REDUCERS
from jobs.kinds.function.splits import Split

F = TypeVar("F", bound=Callable[..., Any])

#: A parameter of this name receives the chunk's progress callback, `progress(done, total)`.
PROGRESS = "progress"


@dataclass(frozen=True)
class Definition:
    """What `@kind` learnt from the function: everything a FunctionKind runs by."""

    function: Callable[..., Any]
    split: Split
    # The form's fields in order; `passed` ones are also the function's keyword arguments.
    fields: Mapping[str, ParamField]
    takes_progress: bool
    combine: Callable[[Params, Sequence[Any]], Any]
    display: Callable[[Params, Any], ResultDisplay | None] | None = None
    finishes_job: Callable[[Any], bool] | None = None
    estimate_seconds: Callable[[Params], float | None] | None = None


class FunctionKind(JobKind):
    """A kind made by `@kind` from one function (see jobs.kinds.function).

    A chunk spec is `{"index": i, <the split's part>, "params": {...}}`: the part is this
    chunk's share of the input (bounds, items, a byte range, a seed), `params` the job's
    other parameters the function takes.
    """

    definition: ClassVar[Definition]

    def split(self, params: Params) -> Sequence[Spec]:
        how = self.definition
        own = how.split.own()
        shared = {
            name: params[name]
            for name, field in how.fields.items()
            if field.passed and name not in own
        }
        return [
            {"index": index, **part, "params": shared}
            for index, part in enumerate(how.split.parts(params))
        ]

    def run(self, spec: Spec, progress: Progress) -> Any:
        how = self.definition
        arguments = {
            name: how.fields[name].to_call(value) for name, value in spec["params"].items()
        }
        for name in how.split.own():
            if how.fields[name].passed:
                arguments[name] = spec[name]
        if how.takes_progress:
            arguments[PROGRESS] = progress
        return how.function(how.split.chunk(self.name, spec), **arguments)

    def combine(self, params: Params, partials: Sequence[Any]) -> Any:
        return self.definition.combine(params, partials)

    def finishes_job(self, partial: Any) -> bool:
        finishes = self.definition.finishes_job
        return finishes is not None and bool(finishes(partial))

    def result_display(self, params: Params, result: Any) -> ResultDisplay | None:
        display = self.definition.display
        return None if display is None else display(params, result)

    def estimate_seconds(self, params: Params) -> float | None:
        estimate = self.definition.estimate_seconds
        return None if estimate is None else estimate(params)


class KindOptions(TypedDict, total=False):
    """What `@kind` takes besides the function (see `function_kind`)."""

    split: Required[Split]
    combine: Required[str | Callable[..., Any]]
    name: str | None
    label: str | None
    description: str | None
    display: Callable[..., ResultDisplay | None] | None
    finishes_job: Callable[[Any], bool] | None
    time_limit_s: int | None
    estimate_seconds: Callable[[Params], float | None] | None


def kind(**options: Unpack[KindOptions]) -> Callable[[F], F]:
    """Register the decorated function as a job kind; the function itself stays as it is.

    The first parameter receives the chunk (what `split` says); every other one is a form
    field made from its type hint and default, except `progress`, which receives the
    chunk's progress callback. Raises KindDefinitionError, naming the function and the
    parameter, when something cannot become a kind.
    """

    def decorate(function: F) -> F:
        register(function_kind(function, **options))
        return function

    return decorate


def function_kind(
    function: Callable[..., Any],
    *,
    split: Split,
    combine: str | Callable[..., Any],
    name: str | None = None,
    label: str | None = None,
    description: str | None = None,
    display: Callable[..., ResultDisplay | None] | None = None,
    finishes_job: Callable[[Any], bool] | None = None,
    time_limit_s: int | None = None,
    estimate_seconds: Callable[[Params], float | None] | None = None,
) -> type[FunctionKind]:
    """The JobKind class `@kind` registers, not registered (for tests and tools)."""
    where = getattr(function, "__name__", repr(function))
    if not isinstance(split, Split):
        raise KindDefinitionError(
            f"{where}(): split= must be over_range(...), over_items(...), over_lines(...) or "
            f"seeded(...), not {split!r}."
        )
    first, parameters, takes_progress = _parameters(where, function)
    hints = _hints(where, function)
    fields = {
        parameter.name: param_field(
            f"{where}({parameter.name})", parameter, hints.get(parameter.name, parameter.annotation)
        )
        for parameter in parameters
    }
    fields = split.prepare(where, first, hints.get(first.name, first.annotation), fields)
    kind_name = name or function.__name__
    if not kind_name.isidentifier():
        raise KindDefinitionError(
            f"{where}(): name={kind_name!r} must be an identifier (letters, digits, _)."
        )
    if time_limit_s is not None and (not isinstance(time_limit_s, int) or time_limit_s < 1):
        raise KindDefinitionError(f"{where}(): time_limit_s must be a whole number of seconds ≥ 1.")
    definition = Definition(
        function=function,
        split=split,
        fields=fields,
        takes_progress=takes_progress,
        combine=_combine(where, combine),
        display=None if display is None else _with_params(where, "display", display),
        finishes_job=finishes_job,
        estimate_seconds=estimate_seconds,
    )
    class_name = "".join(part.capitalize() for part in kind_name.split("_")) or "Function"
    attributes: dict[str, Any] = {
        "name": kind_name,
        "label": label or pretty_name(kind_name),
        "description": description or _paragraphs(inspect.getdoc(function) or ""),
        "form_class": _form_class(class_name, fields, split),
        "definition": definition,
        "__module__": function.__module__,
        "__qualname__": class_name,
        "__doc__": f"The job kind `{kind_name}`, made by @kind from {where}().",
    }
    if time_limit_s is not None:
        attributes["time_limit_s"] = time_limit_s
    return type(class_name, (FunctionKind,), attributes)


def _paragraphs(docstring: str) -> str:
    """A docstring as the new-job page shows a description: each paragraph on one line."""
    return "\n\n".join(" ".join(part.split()) for part in docstring.split("\n\n") if part.strip())


def _parameters(
    where: str, function: Callable[..., Any]
) -> tuple[inspect.Parameter, list[inspect.Parameter], bool]:
    """The first parameter (the chunk), the form's parameters, and whether `progress` is one."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as error:
        raise KindDefinitionError(f"{where}: not a function with a signature ({error}).") from None
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise KindDefinitionError(
            f"{where}(): needs a first positional parameter; it receives the chunk."
        )
    first, *rest = parameters
    for parameter in rest:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise KindDefinitionError(
                f"{where}({parameter.name}): *args and **kwargs cannot be form fields."
            )
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise KindDefinitionError(
                f"{where}({parameter.name}): only the first parameter may be positional-only."
            )
    form_parameters = [parameter for parameter in rest if parameter.name != PROGRESS]
    return first, form_parameters, len(form_parameters) < len(rest)


def _hints(where: str, function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return get_type_hints(function, include_extras=True)
    except Exception as error:  # any failure to resolve them is the function's to fix
        raise KindDefinitionError(
            f"{where}(): its type hints cannot be resolved: {type(error).__name__}: {error}"
        ) from None


def _combine(
    where: str, combine: str | Callable[..., Any]
) -> Callable[[Params, Sequence[Any]], Any]:
    if isinstance(combine, str):
        if combine not in REDUCERS:
            raise KindDefinitionError(
                f"{where}(): combine={combine!r} is not one of {', '.join(REDUCERS)} or a function."
            )
        reducer = REDUCERS[combine]
        return lambda params, partials: reducer(partials)
    return _with_params(where, "combine", combine)


def _with_params(where: str, role: str, given: Callable[..., Any]) -> Callable[[Params, Any], Any]:
    """`given` as a function of (params, value), whether it takes (value) or (params, value)."""
    if not callable(given):
        raise KindDefinitionError(f"{where}(): {role}= must be a function, not {given!r}.")
    try:
        positional = [
            parameter
            for parameter in inspect.signature(given).parameters.values()
            if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
            and parameter.default is parameter.empty
        ]
    except (TypeError, ValueError):
        positional = []
    if len(positional) == 1:
        return lambda params, value: given(value)
    if len(positional) == 2:
        return given
    raise KindDefinitionError(
        f"{where}(): {role}= takes (value) or (params, value); "
        f"{getattr(given, '__name__', given)} takes {len(positional)} arguments."
    )


def _form_class(
    class_name: str, fields: Mapping[str, ParamField], split: Split
) -> type[forms.Form]:
    def clean(self: forms.Form) -> dict[str, Any]:
        data = forms.Form.clean(self) or {}
        if errors := split.errors(data, fields):
            raise ValidationError(errors)
        return data

    # The checks across fields sit in a base class, so that no parameter's name (a field of
    # the subclass, `clean` included) can hide them.
    checked = type(f"{class_name}Checks", (forms.Form,), {"clean": clean})
    declared = {name: param.field for name, param in fields.items()}
    form: type[forms.Form] = type(f"{class_name}Form", (checked,), declared)
    return form
