"""Form fields from a function's type hints, and the markers that set their limits and words.

`Annotated[int, Range(1, 10**9), Label("Darts"), Help("How many to throw.")]` becomes an
IntegerField with those bounds, label and help text. Constraints of the `annotated_types`
package (Ge, Gt, Le, Lt, Interval, MinLen, MaxLen, Len) are read too, by their names, so
that package is never a dependency. Anything else fails when the kind is defined.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Annotated, Any, Literal, get_args, get_origin

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.validators import BaseValidator
from django.forms.utils import pretty_name

from jobs.kinds.base import ListField, UploadField

# Without a MaxLength, a text parameter takes at most this many characters and a list
# parameter at most this many items (every chunk spec carries the values it needs).
DEFAULT_MAX_LENGTH = 1_000
DEFAULT_MAX_ITEMS = 10_000


class KindDefinitionError(TypeError):
    """A function that cannot become a kind: raised when it is decorated, naming it."""


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of a number (of each item, for a list of numbers)."""

    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Label:
    """The field's label on the form (default: the parameter's name, capitalised)."""

    text: str


@dataclass(frozen=True)
class Help:
    """The field's help text, shown under it and in the API schema."""

    text: str


@dataclass(frozen=True)
class MaxLength:
    """At most this many characters (a `str`) or items (a `list`)."""

    value: int


@dataclass(frozen=True)
class Upload:
    """A parameter that names an uploaded file (`file: Upload`).

    The form shows a file input and the API takes an upload's id (see
    jobs.kinds.base.UploadField); the function receives this: the file's name and size, and
    `open()` to read its bytes through Django's storage (so a worker on another machine can).
    """

    id: int
    name: str
    size: int
    storage_name: str

    def open(self) -> IO[bytes]:
        handle: IO[bytes] = default_storage.open(self.storage_name, "rb")
        return handle


@dataclass
class ParamField:
    """One parameter of the function as a form field, and how its JSON value reaches it."""

    name: str
    field: forms.Field
    # From the value the job stores (JSON) to what the function receives.
    to_call: Callable[[Any], Any] = dataclasses.field(default=lambda value: value)
    # False for the parameters a split strategy adds (chunks, seed, a file) that the
    # function did not declare: the form has them, the function does not receive them.
    passed: bool = True

    @property
    def label(self) -> str:
        return str(self.field.label or pretty_name(self.name))


class _Above(BaseValidator):
    message = "Ensure this value is greater than %(limit_value)s."
    code = "min_value"

    def compare(self, a: Any, b: Any) -> bool:
        return bool(a <= b)


class _Below(BaseValidator):
    message = "Ensure this value is less than %(limit_value)s."
    code = "max_value"

    def compare(self, a: Any, b: Any) -> bool:
        return bool(a >= b)


@dataclass
class _Limits:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    label: str | None = None
    help: str = ""


_ANNOTATED_TYPES = {
    "Ge": ("ge",),
    "Gt": ("gt",),
    "Le": ("le",),
    "Lt": ("lt",),
    "Interval": ("ge", "gt", "le", "lt"),
    "MinLen": ("min_length",),
    "MaxLen": ("max_length",),
    "Len": ("min_length", "max_length"),
}

SUPPORTED = (
    "int, float, bool, str, a Literal of strings, an Enum, list[str], list[int], list[float] "
    "or Upload"
)


def param_field(where: str, parameter: inspect.Parameter, hint: Any) -> ParamField:
    """The form field of one parameter; KindDefinitionError when its annotation has none.

    `where` names the function and parameter in messages: `pi_darts(samples)`.
    """
    if hint is inspect.Parameter.empty:
        raise KindDefinitionError(f"{where}: needs a type hint ({SUPPORTED}).")
    base, limits = _unwrap(where, hint)
    default = parameter.default
    has_default = default is not inspect.Parameter.empty
    words: dict[str, Any] = {"label": limits.label, "help_text": limits.help}
    to_call: Callable[[Any], Any] = _same
    made: forms.Field
    if base is bool:
        _refuse(where, limits, "bool", numbers=False, lengths=False)
        made = forms.BooleanField(required=False, **words)
    elif base is int or base is float:
        _refuse(where, limits, base.__name__, numbers=True, lengths=False)
        made = _number_field(base, limits, required=True, **words)
    elif base is str:
        _refuse(where, limits, "str", numbers=False, lengths=True)
        made = _text_field(limits, required=not has_default or default != "", **words)
    elif get_origin(base) is Literal:
        _refuse(where, limits, "Literal", numbers=False, lengths=False)
        choices = get_args(base)
        if not all(isinstance(choice, str) for choice in choices):
            raise KindDefinitionError(f"{where}: a Literal's choices must be strings.")
        made = forms.ChoiceField(choices=[(c, c) for c in choices], **words)
    elif isinstance(base, type) and issubclass(base, enum.Enum):
        _refuse(where, limits, base.__name__, numbers=False, lengths=False)
        made, to_call = _enum_field(base, words)
        if isinstance(default, base):
            default = made.prepare_value(default)
    elif get_origin(base) is list:
        made = _list_field(where, base, limits, required=not has_default, words=words)
        if isinstance(default, tuple):
            default = list(default)
    elif base is Upload:
        _refuse(where, limits, "Upload", numbers=False, lengths=False)
        if has_default:
            raise KindDefinitionError(f"{where}: an Upload cannot have a default.")
        made = UploadField(**{k: v for k, v in words.items() if v})
        to_call = _upload
    else:
        raise KindDefinitionError(f"{where}: {_name(hint)} has no form field; use {SUPPORTED}.")
    if has_default:
        try:
            made.clean(default)
        except ValidationError as error:
            raise KindDefinitionError(
                f"{where}: the default {default!r} is not a valid value: {' '.join(error.messages)}"
            ) from None
        made.initial = default
    return ParamField(name=parameter.name, field=made, to_call=to_call)


def _unwrap(where: str, hint: Any) -> tuple[Any, _Limits]:
    limits = _Limits()
    if get_origin(hint) is not Annotated:
        return hint, limits
    base, *metadata = get_args(hint)
    for item in metadata:
        if isinstance(item, Range):
            limits.ge, limits.le = item.min, item.max
        elif isinstance(item, Label):
            limits.label = item.text
        elif isinstance(item, Help):
            limits.help = item.text
        elif isinstance(item, MaxLength):
            limits.max_length = item.value
        elif type(item).__module__ == "annotated_types" and type(item).__name__ in _ANNOTATED_TYPES:
            for attribute in _ANNOTATED_TYPES[type(item).__name__]:
                value = getattr(item, attribute, None)
                if value is not None:
                    setattr(limits, attribute, value)
        else:
            raise KindDefinitionError(
                f"{where}: {item!r} in Annotated is not Range, Label, Help, MaxLength or an "
                "annotated_types bound (Ge, Gt, Le, Lt, Interval, MinLen, MaxLen, Len)."
            )
    return base, limits


def _refuse(where: str, limits: _Limits, type_name: str, *, numbers: bool, lengths: bool) -> None:
    """Refuse limits a type cannot have (a Range on a str, a MaxLength on an int)."""
    bounded = any(value is not None for value in (limits.ge, limits.gt, limits.le, limits.lt))
    if bounded and not numbers:
        raise KindDefinitionError(f"{where}: a {type_name} cannot have a Range or number bound.")
    if (limits.min_length is not None or limits.max_length is not None) and not lengths:
        raise KindDefinitionError(f"{where}: a {type_name} cannot have a length.")


def _number_field(base: type, limits: _Limits, *, required: bool, **words: Any) -> forms.Field:
    validators: list[BaseValidator] = []
    lowest, highest = limits.ge, limits.le
    if base is int:
        # A strict bound on whole numbers is the next whole number inside it.
        if limits.gt is not None:
            lowest = _tighter(lowest, math.floor(limits.gt) + 1, max)
        if limits.lt is not None:
            highest = _tighter(highest, math.ceil(limits.lt) - 1, min)
        return forms.IntegerField(
            min_value=None if lowest is None else math.ceil(lowest),
            max_value=None if highest is None else math.floor(highest),
            required=required,
            **words,
        )
    if limits.gt is not None:
        validators.append(_Above(limits.gt))
    if limits.lt is not None:
        validators.append(_Below(limits.lt))
    return forms.FloatField(
        min_value=lowest, max_value=highest, required=required, validators=validators, **words
    )


def _tighter(current: float | None, bound: float, pick: Callable[[float, float], float]) -> float:
    return bound if current is None else pick(current, bound)


def _text_field(limits: _Limits, *, required: bool, **words: Any) -> forms.CharField:
    return forms.CharField(
        max_length=DEFAULT_MAX_LENGTH if limits.max_length is None else limits.max_length,
        min_length=limits.min_length,
        required=required,
        **words,
    )


def _list_field(
    where: str, hint: Any, limits: _Limits, *, required: bool, words: dict[str, Any]
) -> ListField:
    (item,) = get_args(hint) or (None,)
    item_limits = _Limits(ge=limits.ge, gt=limits.gt, le=limits.le, lt=limits.lt)
    if item is int or item is float:
        item_field: forms.Field = _number_field(item, item_limits, required=True)
    elif item is str:
        _refuse(where, item_limits, "list[str]", numbers=False, lengths=True)
        item_field = _text_field(item_limits, required=True)
    else:
        raise KindDefinitionError(
            f"{where}: {_name(hint)} has no form field; lists hold str, int or float."
        )
    return ListField(
        item_field=item_field,
        max_items=DEFAULT_MAX_ITEMS if limits.max_length is None else limits.max_length,
        min_items=limits.min_length or 0,
        required=required,
        **words,
    )


def _enum_field(
    choices: type[enum.Enum], words: dict[str, Any]
) -> tuple[forms.Field, Callable[[Any], Any]]:
    """Members by value when every value is a string (what people read), else by name."""
    members = list(choices)
    by_value = all(isinstance(member.value, str) for member in members)

    def key(member: enum.Enum) -> str:
        return str(member.value) if by_value else member.name

    class EnumField(forms.ChoiceField):
        def prepare_value(self, value: Any) -> Any:
            return key(value) if isinstance(value, enum.Enum) else value

    field = EnumField(choices=[(key(m), key(m)) for m in members], **words)
    lookup = {key(member): member for member in members}
    return field, lookup.__getitem__


def _same(value: Any) -> Any:
    return value


def _upload(value: Any) -> Upload:
    """The resolved upload (jobs.services' `{"id", "name", "size", "storage_name"}`)."""
    return Upload(**value)


def _name(hint: Any) -> str:
    if isinstance(hint, type) and not get_args(hint):
        return hint.__name__
    return repr(hint).replace("typing.", "")
