"""The API's JSON parser: DRF's, with a size limit, a nesting limit, and no RecursionError
escaping."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

# Job input is an object of parameters: three levels is all it needs; 32 is generous.
MAX_JSON_DEPTH = 32


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests containers more than `limit` deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
    return False


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser reads a whole body into memory, however large (only form bodies
    honour DATA_UPLOAD_MAX_MEMORY_SIZE), and lets RecursionError escape (a 500) for JSON
    nested ~1,000 deep. This one stops at DATA_UPLOAD_MAX_MEMORY_SIZE (413) and at
    MAX_JSON_DEPTH levels (400)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise BodyTooLarge(f"A JSON body may be at most {limit:,} bytes.")
        message = f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep."
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise ParseError(message) from None
        except (ValueError, json.JSONDecodeError) as error:
            raise ParseError(f"JSON parse error - {error}") from None
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(message)
        return data
