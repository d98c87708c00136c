"""schemathesis hooks for .ci/api-checks (loaded through SCHEMATHESIS_HOOKS).

One kind of reported failure is the tool's, not the API's. A multipart field
that schemathesis generates as an empty array or object sends no part at all
(it sends one part per item), so the server receives a form without that
field. schemathesis knows this and re-validates the form as it was sent, but
that re-validation gives up when the form also holds a file part (its JSON
Schema validator cannot read the file object), and the case is then reported
as ST201, "schema-violating request accepted", for a form that was valid as
sent. Such a case, and only such a case, is dropped here: the form as sent
(empty fields left out, file parts read as empty strings, which
`format: binary` allows) must satisfy the request schema, else the failure
stands.
"""

import schemathesis
from schemathesis.core import media_types
from schemathesis.core.jsonschema import make_validator
from schemathesis.transport.serialization import Binary


def _as_sent(body):
    sent = {}
    for name, value in body.items():
        if value in ([], {}):
            continue  # no part on the wire
        sent[name] = "" if isinstance(value, (Binary, bytes)) else value
    return sent


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but ST201 on a multipart form valid as sent."""
    if failure.code != "ST201" or case.media_type is None:
        return True
    if media_types.parse(case.media_type) != ("multipart", "form-data") or not isinstance(case.body, dict):
        return True
    if not any(value in ([], {}) for value in case.body.values()):
        return True
    body = case.operation.get_body_for_media_type(case.media_type)
    if body is None:
        return True
    validator = make_validator(body.optimized_schema, case.operation.schema.adapter.jsonschema_validator_cls)
    return not validator.is_valid(_as_sent(case.body))
