"""The API's JSON parser: DRF's, with a nesting limit and no RecursionError escaping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
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


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser lets RecursionError escape (a 500) for JSON nested ~1,000 deep."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        message = f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep."
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(message) from None
        except (ValueError, json.JSONDecodeError) as error:
            raise ParseError(f"JSON parse error - {error}") from None
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(message)
        return data
