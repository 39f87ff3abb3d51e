"""The OpenAPI description of the JSON API (drf-spectacular): shapes, errors, kinds' params.

The views build their JSON with jobs/protocol.py's builders; the job, chunk and waiting
schemas (JobOut, ChunkOut, WaitingOut) are derived from its TypedDicts here, so a field
added there is documented with no change in this module. Each kind's `params` is described
from its own Django form (`form_json_schema`), so the schema cannot drift from what the API
validates.
"""

from __future__ import annotations

from functools import cache
from types import UnionType
from typing import (
    Annotated,
    Any,
    Literal,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from django import forms
from django.conf import settings
from django.db.models import Choices
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from jobs import kinds, protocol
from jobs.history import HISTORY_SORTS
from jobs.kinds.base import ListField, UploadField
from jobs.models import Job
from jobs.options import PRIORITY_NAMES, kind_time_limit_s

COMPONENTS = "#/components/schemas/"

# --- each kind's parameters, from its form ---------------------------------------------------


def _field_json_schema(field: forms.Field) -> dict[str, Any]:
    schema: dict[str, Any]
    if isinstance(field, UploadField):
        schema = {"type": "integer", "minimum": field.min_value or 1}
        schema["description"] = "Id of an upload (POST /api/uploads/) of yours."
    elif isinstance(field, ListField):
        schema = {"type": "array", "items": _field_json_schema(field.item_field)}
        schema["maxItems"] = field.max_items
        if field.min_items:
            schema["minItems"] = field.min_items
    elif isinstance(field, forms.FloatField | forms.DecimalField):  # subclasses of IntegerField
        schema = {"type": "number"}
    elif isinstance(field, forms.IntegerField):
        schema = {"type": "integer"}
    elif isinstance(field, forms.BooleanField):
        schema = {"type": "boolean"}
    elif isinstance(field, forms.ChoiceField):
        schema = {"enum": [value for value, _ in field.choices]}  # type: ignore[misc, union-attr]
    elif isinstance(field, forms.CharField):
        schema = {"type": "string"}
        if field.max_length is not None:
            schema["maxLength"] = int(field.max_length)
        if field.min_length is not None:
            schema["minLength"] = int(field.min_length)
    else:
        schema = {}
    for attribute, keyword in (("min_value", "minimum"), ("max_value", "maximum")):
        limit = getattr(field, attribute, None)
        if limit is not None and "type" in schema and schema["type"] in ("integer", "number"):
            schema[keyword] = limit
    if field.label:
        schema["title"] = str(field.label)
    if field.help_text:
        schema["description"] = " ".join(
            part for part in (schema.get("description"), str(field.help_text)) if part
        )
    initial = field.initial() if callable(field.initial) else field.initial
    if initial is not None:
        # A parameter left out takes the form's initial value (JobKind.clean_params).
        schema["default"] = initial
    return schema


def form_json_schema(form_class: type[forms.Form]) -> dict[str, Any]:
    """A JSON schema of the object a form accepts: types, limits, defaults, help texts.

    Unknown keys are refused by the API (`JobKind.clean_params`), hence
    `additionalProperties: false`. Checks across fields (e.g. `stop > start`) live in the
    form's `clean()` and cannot be expressed here; the API answers those with a 400 by field.
    """
    fields = form_class.base_fields
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: _field_json_schema(field) for name, field in fields.items()},
        "additionalProperties": False,
    }
    # A parameter with an initial value may be left out (it takes that value).
    required = [name for name, field in fields.items() if field.required and field.initial is None]
    if required:
        schema["required"] = required
    return schema


def _component_name(kind_name: str) -> str:
    return "".join(part.capitalize() for part in kind_name.split("_"))


def kind_components() -> dict[str, dict[str, Any]]:
    """`<Kind>Params` and `<Kind>JobCreate` for every registered kind."""
    components: dict[str, dict[str, Any]] = {}
    for kind in kinds.all_kinds():
        name = _component_name(kind.name)
        params = form_json_schema(kind.form_class)
        params["description"] = f"Parameters of `{kind.name}`: {kind.description}".strip()
        components[f"{name}Params"] = params
        components[f"{name}JobCreate"] = {
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": [kind.name]},
                "params": {"$ref": f"{COMPONENTS}{name}Params"},
                "parallelism": parallelism_schema(),
                "chunk_time_limit_s": chunk_time_limit_schema(kind),
                "priority": priority_schema(),
            },
            "required": ["kind", "params"],
        }
    return components


def job_create_schema() -> dict[str, Any]:
    """The body of a job creation: one object per kind, told apart by `kind`."""
    mapping = {
        kind.name: f"{COMPONENTS}{_component_name(kind.name)}JobCreate"
        for kind in kinds.all_kinds()
    }
    return {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "kind", "mapping": mapping},
    }


def parallelism_schema() -> dict[str, Any]:
    return {
        "type": "integer",
        "nullable": True,
        "minimum": 1,
        "maximum": settings.COREBOARD_MAX_PARALLELISM,
        "description": (
            "Most worker processes the job uses at once; null or absent: "
            "COREBOARD_DEFAULT_PARALLELISM, by default every live worker process that has "
            "the job's kind, counted while it runs (stored as 0)."
        ),
    }


def priority_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "nullable": True,
        "enum": [*PRIORITY_NAMES, None],
        "description": (
            "Which waiting work the workers take first: a higher priority's slots go ahead "
            "of lower ones, and a running lower one gives way after its current chunk; a slot "
            "waiting COREBOARD_PRIORITY_AGING_S moves up a step, so none starves. `urgent` "
            "needs the `jobs.submit_urgent` permission, which staff grant. Null or absent: "
            "`normal`."
        ),
    }


def chunk_time_limit_schema(kind: kinds.JobKind) -> dict[str, Any]:
    limit = kind_time_limit_s(kind)
    return {
        "type": "integer",
        "nullable": True,
        "minimum": 1,
        "maximum": limit,
        "description": (
            "Seconds one chunk may run before its process is stopped and the chunk fails for "
            f"good (no retry); null or absent: the kind's limit, {limit} s."
        ),
    }


# --- shapes of responses -------------------------------------------------------------------

FIELD_ERRORS: dict[str, Any] = {
    "type": "object",
    "description": (
        "Errors by field: each field name maps to its messages; `params` maps each "
        'parameter to its messages (`{"params": {"stop": ["..."]}}`).'
    ),
    "additionalProperties": {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        ]
    },
}
DETAIL: dict[str, Any] = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}


def add_components(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the components referenced by `$ref` above."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(kind_components())
    schemas["JobCreate"] = job_create_schema()
    schemas["FieldErrors"] = FIELD_ERRORS
    schemas["Detail"] = DETAIL
    # Responses carry exactly the documented fields: a field added to protocol.job_state without
    # its description here fails the schema checks (tests/integration/test_api_fuzz.py).
    for name in (
        "JobOut",
        "WaitingOut",
        "ChunkOut",
        "ChunkOutputOut",
        "ChunkOutputItemOut",
        "JobOutputOut",
        "JobResourcesOut",
        "ResourceSampleOut",
        "JobPreviewOut",
        "UploadOut",
        "UploadListItem",
        "KindOut",
        "StudyOut",
        "StudyRunOut",
        "ScheduleOut",
        "Conflict",
    ):
        schemas[name]["additionalProperties"] = False
    # Ids in paths are `<int:...>` converters: a negative number matches no URL at all.
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["schema"].get("type") == "integer":
                    parameter["schema"]["minimum"] = 0
    return result


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"{COMPONENTS}{name}"}


def _described_field(hint: Any) -> serializers.Field[Any, Any, Any, Any]:
    """A DRF field that describes one TypedDict field of jobs.protocol for the schema.

    `Annotated` extras say more: a string is the description, a TextChoices class the
    allowed values, protocol.DateTime an ISO 8601 time.
    """
    extras: tuple[Any, ...] = ()
    if get_origin(hint) is Annotated:
        hint, *rest = get_args(hint)
        extras = tuple(rest)
    kwargs: dict[str, Any] = {}
    args = get_args(hint)
    if get_origin(hint) in (Union, UnionType) and type(None) in args:
        kwargs["allow_null"] = True
        others = [arg for arg in args if arg is not type(None)]
        hint = others[0] if len(others) == 1 else Any
    for extra in extras:
        if isinstance(extra, str):
            kwargs["help_text"] = extra
    # Allowed values: a Choices class's, and those of a `Literal` beside it (a run's job
    # status, or "waiting").
    choices: list[tuple[Any, str]] = []
    for extra in extras:
        if isinstance(extra, type) and issubclass(extra, Choices):
            choices.extend(extra.choices)
        elif get_origin(extra) is Literal:
            choices.extend((value, str(value)) for value in get_args(extra))
    field: serializers.Field[Any, Any, Any, Any]
    if choices:
        field = serializers.ChoiceField(choices=choices, **kwargs)
    elif protocol.DateTime in extras:
        field = serializers.DateTimeField(**kwargs)
    elif get_origin(hint) is Literal:
        field = serializers.ChoiceField(choices=list(get_args(hint)), **kwargs)
    elif is_typeddict(hint):
        field = typed_dict_serializer(hint)(**kwargs)
    elif get_origin(hint) is list and is_typeddict(item := get_args(hint)[0]):
        field = typed_dict_serializer(item)(many=True, **kwargs)
    elif get_origin(hint) is list:
        field = serializers.ListField(child=_described_field(item), **kwargs)
    elif hint is bool:
        field = serializers.BooleanField(**kwargs)
    elif hint is int:
        field = serializers.IntegerField(**kwargs)
    elif hint is float:
        field = serializers.FloatField(**kwargs)
    elif hint is str:
        field = serializers.CharField(allow_blank=True, **kwargs)
    elif hint is dict or get_origin(hint) is dict:
        field = serializers.DictField(**kwargs)
    else:
        field = serializers.JSONField(**kwargs)
    return field


@cache
def typed_dict_serializer(shape: type, component: str = "") -> type[serializers.Serializer[Any]]:
    """A serializer class named `component` or `<Shape>Out` (the schema component's name)
    that describes a jobs.protocol TypedDict: every field, its type, nullability and
    description. It only describes: the views build their JSON with the protocol's builders."""
    hints = get_type_hints(shape, include_extras=True)
    fields = {name: _described_field(hint) for name, hint in hints.items()}
    name = component or shape.__name__.removesuffix("State").removesuffix("Api") + "Out"
    return type(name, (serializers.Serializer,), {**fields, "__doc__": shape.__doc__})


# The API's job, chunk and waiting shapes, from jobs/protocol.py.
JobOut = typed_dict_serializer(protocol.JobApiState)
ChunkOut = typed_dict_serializer(protocol.ChunkState)
WaitingOut = typed_dict_serializer(protocol.WaitingState)
ChunkOutputOut = typed_dict_serializer(protocol.ChunkOutputState)
JobOutputOut = typed_dict_serializer(protocol.JobOutputState)
JobResourcesOut = typed_dict_serializer(protocol.JobResourcesState)


class JobPreviewOut(serializers.Serializer[Any]):
    chunks = serializers.IntegerField(help_text="How many chunks the job would have.")
    cpu_seconds = serializers.FloatField(
        help_text="CPU seconds the quotas would count for it: its kind's estimate, or your "
        "measured pace of the kind, at most chunks × the chunk time limit."
    )
    cpu_seconds_estimated = serializers.BooleanField(
        help_text="Whether the CPU seconds are known (false: the kind gives no estimate and "
        "you have no succeeded run of it yet, so none are counted)."
    )
    cpu_seconds_basis = serializers.ChoiceField(
        choices=["kind", "pace", "none"],
        help_text="Where cpu_seconds come from: the kind's estimate, your latest succeeded "
        "runs of the kind (CPU seconds per chunk × chunks), or nothing known yet.",
    )
    quota_job_cpu_seconds = serializers.IntegerField(
        help_text="The most one job may ask for (COREBOARD_QUOTA_JOB_S)."
    )
    quota_cpu_seconds = serializers.IntegerField(
        help_text="The most your active jobs may ask for together (COREBOARD_QUOTA_CHUNK_S)."
    )
    active_cpu_seconds = serializers.FloatField(
        help_text="What your active jobs still ask for now."
    )


class UploadIn(serializers.Serializer[Any]):
    file = serializers.FileField()


UploadOut = typed_dict_serializer(protocol.UploadState)
UploadListItem = typed_dict_serializer(protocol.UploadListItemState, component="UploadListItem")


class KindOut(serializers.Serializer[Any]):
    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    description = serializers.CharField(allow_blank=True)
    params_schema = serializers.DictField(help_text="JSON schema of its `params`.")


UNAUTHORIZED = OpenApiResponse(_ref("Detail"), description="Not logged in and no valid token.")
NOT_FOUND = OpenApiResponse(
    _ref("Detail"), description="No such job (or not yours), or no such page or file."
)
BAD_INPUT = OpenApiResponse(
    {"oneOf": [_ref("FieldErrors"), _ref("Detail")]},
    description="Refused: errors by field, or a body that is not JSON (`detail`).",
)
INVALID_PAGE = OpenApiResponse(_ref("Detail"), description="No such page.")
# Named as it was before its shape moved to jobs/protocol.py.
ConflictOut = typed_dict_serializer(protocol.ConflictBody, component="Conflict")
CONFLICT_RESPONSE = OpenApiResponse(ConflictOut, description="Not in a state for this.")
THROTTLED = OpenApiResponse(
    _ref("Detail"),
    description="Too many requests from you: wait the seconds the `Retry-After` header says.",
)
TOO_MANY = OpenApiResponse(
    _ref("FieldErrors"),
    description="Too many at once: the limit and its setting, by field; try again when one ends.",
)
_COMMON = {401: UNAUTHORIZED, 403: UNAUTHORIZED}
_ONE_JOB = {**_COMMON, 404: NOT_FOUND}

# Keyword arguments of `extend_schema` per view method, applied in jobs/api.py.
job_list = extend_schema(
    summary="Your jobs, newest first",
    parameters=[
        OpenApiParameter("status", enum=Job.Status.values, description="Only jobs in this state.")
    ],
    responses={200: JobOut(many=True), 404: INVALID_PAGE, **_COMMON},
)
job_export_csv = extend_schema(
    summary="Your jobs' history as CSV (streamed), with the history page's filters",
    parameters=[
        OpenApiParameter("q", description="Search: a job id, or text as the history page's."),
        OpenApiParameter("status", enum=Job.Status.values, description="Only jobs in this state."),
        OpenApiParameter("kind", description="Only jobs of this kind (its name)."),
        OpenApiParameter("owner", description="Staff only: only this person's jobs."),
        OpenApiParameter("created_from", OpenApiTypes.DATE, description="Created on or after."),
        OpenApiParameter("created_to", OpenApiTypes.DATE, description="Created on or before."),
        OpenApiParameter("sort", enum=list(HISTORY_SORTS), description="Order (newest first)."),
    ],
    responses={
        (200, "text/csv"): {"type": "string"},
        400: BAD_INPUT,
        429: TOO_MANY,
        **_COMMON,
    },
)
job_create = extend_schema(
    summary="Create a job",
    request={"application/json": _ref("JobCreate")},
    responses={201: JobOut, 400: BAD_INPUT, 429: THROTTLED, **_COMMON},
)
job_preview = extend_schema(
    summary="How many chunks a job would have, its estimated CPU seconds and the quotas "
    "(creates nothing)",
    request={"application/json": _ref("JobCreate")},
    responses={200: JobPreviewOut, 400: BAD_INPUT, 429: THROTTLED, **_COMMON},
)
job_retrieve = extend_schema(summary="One job", responses={200: JobOut, **_ONE_JOB})
job_delete = extend_schema(
    summary="Delete an ended job",
    responses={204: None, 409: CONFLICT_RESPONSE, **_ONE_JOB},
)
job_cancel = extend_schema(
    summary="Cancel a job",
    request=None,
    responses={200: JobOut, 409: CONFLICT_RESPONSE, **_ONE_JOB},
)
job_retry = extend_schema(
    summary="Re-run what failed: the chunks not done, or only the combine step",
    request=None,
    responses={200: JobOut, 400: BAD_INPUT, 409: CONFLICT_RESPONSE, 429: THROTTLED, **_ONE_JOB},
)
job_rerun = extend_schema(
    summary="A new job with the same kind and parameters",
    request=None,
    responses={201: JobOut, 400: BAD_INPUT, 429: THROTTLED, **_ONE_JOB},
)
job_chunks = extend_schema(
    summary="A job's chunks, by index (paged)",
    responses={200: ChunkOut(many=True), **_ONE_JOB},
)
job_chunk = extend_schema(
    summary="One chunk of a job, by index (what a job page asks for when a chunk is opened)",
    responses={200: ChunkOut, **_ONE_JOB},
)
chunk_output = extend_schema(
    summary="What one chunk wrote (stdout, stderr, log records): live while it runs",
    parameters=[
        OpenApiParameter(
            "offset",
            OpenApiTypes.INT,
            description=(
                "Only the text from this byte of the chunk's output on (when it is still "
                "retained; otherwise from the first retained byte: see `offset`)."
            ),
        )
    ],
    responses={200: ChunkOutputOut, 400: BAD_INPUT, **_ONE_JOB},
)
job_output = extend_schema(
    summary="What the job's chunks wrote, by chunk",
    responses={200: JobOutputOut, **_ONE_JOB},
)
job_resources = extend_schema(
    summary="The job's CPU and memory timeline, per worker process",
    responses={200: JobResourcesOut, **_ONE_JOB},
)
_FILE = {"type": "string", "format": "binary"}
job_result_file = extend_schema(
    summary="The job's result file",
    parameters=[
        OpenApiParameter(
            "download", OpenApiTypes.STR, description="Present: sent as an attachment."
        )
    ],
    responses={
        (200, "*/*"): _FILE,
        **_ONE_JOB,
        503: OpenApiResponse(
            _ref("Detail"),
            description="The file exists but the web server cannot read it (its owner or mode: "
            "written by a worker that ran as another user); `detail` says so.",
        ),
    },
)
chunk_preview = extend_schema(
    summary="A finished chunk's live preview (kinds that draw one)",
    responses={(200, "*/*"): _FILE, **_ONE_JOB},
)
upload_create = extend_schema(
    summary="Upload a file for a kind to read",
    request={"multipart/form-data": UploadIn},
    responses={201: UploadOut, 400: BAD_INPUT, 413: BAD_INPUT, 429: THROTTLED, **_COMMON},
)
upload_list = extend_schema(
    summary="Your uploads, newest first",
    responses={200: UploadListItem(many=True), 404: INVALID_PAGE, **_COMMON},
)
upload_delete = extend_schema(
    summary="Delete an upload and its file",
    responses={
        204: None,
        404: NOT_FOUND,
        409: OpenApiResponse(ConflictOut, description="An active job reads it."),
        **_COMMON,
    },
)
kind_list = extend_schema(
    summary="The job kinds and their parameters", responses={200: KindOut(many=True), **_COMMON}
)


# --- scaling studies (jobs/api_studies.py, shape: jobs.selectors.studies.study_as_dict) ---------


# A study and its runs, from jobs/protocol.py (jobs.selectors.studies.study_as_dict).
StudyRunOut = typed_dict_serializer(protocol.StudyRunState)
StudyOut = typed_dict_serializer(protocol.StudyState)


class StudyCreateIn(serializers.Serializer[Any]):
    job = serializers.IntegerField(min_value=0, help_text="A succeeded job of yours.")


_ONE_STUDY = {
    **_COMMON,
    404: OpenApiResponse(_ref("Detail"), description="No such study (or not yours)."),
}
study_list = extend_schema(
    summary="Your scaling studies, newest first",
    responses={200: StudyOut(many=True), 404: INVALID_PAGE, **_COMMON},
)
study_create = extend_schema(
    summary="Measure a job's scaling: its work at parallelism 1, 2, 4, … one run at a time",
    request=StudyCreateIn,
    responses={201: StudyOut, 400: BAD_INPUT, 429: THROTTLED, **_COMMON},
)
study_retrieve = extend_schema(
    summary="One scaling study, with its figures", responses={200: StudyOut, **_ONE_STUDY}
)
study_cancel = extend_schema(
    summary="Cancel a scaling study and its running run",
    request=None,
    responses={200: StudyOut, 409: CONFLICT_RESPONSE, **_ONE_STUDY},
)
study_export_csv = extend_schema(
    summary="A scaling study's figures as CSV",
    responses={(200, "text/csv"): {"type": "string"}, **_ONE_STUDY},
)


# --- schedules (jobs/api/schedules.py, shape: jobs.selectors.schedules.schedule_as_dict) ------

ScheduleOut = typed_dict_serializer(protocol.ScheduleState)


class ScheduleIn(serializers.Serializer[Any]):
    """A schedule's fields (jobs.forms.SCHEDULE_FIELDS); on PATCH, any of them."""

    job = serializers.IntegerField(
        min_value=0,
        required=False,
        help_text="Creation only: a job of yours whose kind, parameters and options to use "
        "(the fields below override them).",
    )
    name = serializers.CharField(max_length=120, required=False)
    kind = serializers.CharField(required=False, help_text="Without `job`: required.")
    params = serializers.JSONField(required=False, help_text="The kind's parameters.")
    parallelism = serializers.IntegerField(required=False, allow_null=True)
    chunk_time_limit_s = serializers.IntegerField(required=False, allow_null=True)
    cron = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Minute hour day-of-month month day-of-week (read in `timezone`); "
        "give this or `every`.",
    )
    every = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="An interval in `unit` (at least COREBOARD_SCHEDULE_MIN_INTERVAL_S seconds).",
    )
    unit = serializers.ChoiceField(
        choices=["seconds", "minutes", "hours", "days"], required=False, default="minutes"
    )
    timezone = serializers.CharField(required=False, default="UTC", help_text="IANA name.")
    enabled = serializers.BooleanField(required=False, default=True)
    skip_if_active = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Skip a fire while the previous run is pending or running.",
    )


_ONE_SCHEDULE = {
    **_COMMON,
    404: OpenApiResponse(_ref("Detail"), description="No such schedule (or not yours)."),
}
schedule_list = extend_schema(
    summary="Your schedules, newest first",
    responses={200: ScheduleOut(many=True), 404: INVALID_PAGE, **_COMMON},
)
schedule_create = extend_schema(
    summary="Save a job's parameters as a schedule (cron expression or interval)",
    request=ScheduleIn,
    responses={201: ScheduleOut, 400: BAD_INPUT, **_COMMON},
)
schedule_retrieve = extend_schema(
    summary="One schedule, with its last fire and refusal",
    responses={200: ScheduleOut, **_ONE_SCHEDULE},
)
schedule_update = extend_schema(
    summary="Change a schedule, or turn it on or off (`enabled`)",
    request=ScheduleIn,
    responses={200: ScheduleOut, 400: BAD_INPUT, **_ONE_SCHEDULE},
)
schedule_delete = extend_schema(
    summary="Delete a schedule (the runs it made stay)",
    responses={204: None, **_ONE_SCHEDULE},
)


# --- sweeps (jobs/api/sweeps.py, shape: jobs.selectors.sweeps.sweep_as_dict) --------------------


SweepRunOut = typed_dict_serializer(protocol.SweepRunState)
SweepOut = typed_dict_serializer(protocol.SweepState)


class SweepCreateIn(serializers.Serializer[Any]):
    kind = serializers.CharField(help_text="The kind every run is of.")
    params = serializers.JSONField(
        required=False, help_text="Parameters every run shares (an object)."
    )
    grid = serializers.JSONField(
        required=False,
        help_text='Values per swept parameter (`{"n": [1, 2, 3]}`): one run per combination, '
        "the first parameter varying slowest. Give this or `sets`.",
    )
    sets = serializers.JSONField(
        required=False,
        help_text="A list of parameter objects, one run each (with `params` added). Give this "
        "or `grid`.",
    )
    parallelism = serializers.IntegerField(required=False, help_text="Of every run.")
    chunk_time_limit_s = serializers.IntegerField(required=False, help_text="Of every run.")


_ONE_SWEEP = {
    **_COMMON,
    404: OpenApiResponse(_ref("Detail"), description="No such sweep (or not yours)."),
}
sweep_list = extend_schema(
    summary="Your sweeps (everybody's for staff), newest first",
    responses={200: SweepOut(many=True), 404: INVALID_PAGE, **_COMMON},
)
sweep_create = extend_schema(
    summary="Run a kind over a grid or a list of parameter sets: N jobs admitted as one "
    "(all or none; at most COREBOARD_SWEEP_MAX_RUNS)",
    request=SweepCreateIn,
    responses={201: SweepOut, 400: BAD_INPUT, 429: THROTTLED, **_COMMON},
)
sweep_retrieve = extend_schema(
    summary="One sweep, every run's parameters and figures", responses={200: SweepOut, **_ONE_SWEEP}
)
sweep_cancel = extend_schema(
    summary="Cancel a sweep's active jobs",
    request=None,
    responses={200: SweepOut, 409: CONFLICT_RESPONSE, **_ONE_SWEEP},
)
sweep_export_csv = extend_schema(
    summary="A sweep's runs as CSV: params.<name> columns (swept first), then its figures",
    responses={(200, "text/csv"): {"type": "string"}, **_ONE_SWEEP},
)
