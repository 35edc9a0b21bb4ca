"""Form-encoded requests (RFC 6749 §3.1, §3.2, Appendix B): strict parsing, one value per parameter."""

from __future__ import annotations

from urllib.parse import parse_qsl

from .errors import InvalidRequestError, PayloadTooLargeError

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 64


class Form:
    """Parameters of a form body. Empty values count as omitted (RFC 6749 §3.1).

    Unknown parameters are ignored, as §3.1 requires; a parameter the endpoint reads must appear
    at most once (§3.1, §3.2), which :meth:`get` enforces.
    """

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in fields:
            if value:
                self._values.setdefault(name, []).append(value)

    def get(self, name: str) -> str | None:
        values = self._values.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise InvalidRequestError(f"parameter {name} must not be repeated")
        return values[0]

    def get_all(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))


def parse_form(body: bytes, content_type: str | None, *, max_bytes: int = MAX_FORM_BYTES) -> Form:
    """Parse an ``application/x-www-form-urlencoded`` UTF-8 body, refusing anything else."""
    if content_type is None:
        raise InvalidRequestError(f"Content-Type must be {FORM_MEDIA_TYPE}")
    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() != FORM_MEDIA_TYPE:
        raise InvalidRequestError(f"Content-Type must be {FORM_MEDIA_TYPE}")
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise InvalidRequestError("the form body must be UTF-8")
    if len(body) > max_bytes:
        raise PayloadTooLargeError(f"the request body exceeds {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
        fields = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                           max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise InvalidRequestError("the form body is not valid UTF-8") from None
    except ValueError:
        raise InvalidRequestError(f"the form has more than {MAX_FORM_FIELDS} fields") from None
    return Form(fields)
