"""Schemathesis hooks for MCP's contract run (loaded through SCHEMATHESIS_HOOKS).

Blocking queries (`?index=N&wait=D`) legitimately hold a request for up to
five minutes when N is at or past the current revision. To keep every
example short, a request that carries `index` gets `wait=50ms` in place of
any `wait` that would hold it (absent, empty, or a duration the documents
allow). A `wait` the documents forbid is left as generated: it is a negative
example, the service refuses it at once, and replacing it would send a
valid request that schemathesis still counts as a negative one ("accepted
schema-violating request"). `wait` is fuzzed freely on requests without
`index` too (where the service parses and validates it all the same).
"""

import re

import schemathesis

SHORT_WAIT = "50ms"
# What the documents allow for `wait` (registry-svc and config-svc), or empty.
HOLDING_WAIT = re.compile(r"([0-9]{1,9}(ms|s|m|h)?)?")


def shortened(wait):
    """`wait` with every value that would hold the request made short."""
    if wait is None:
        return SHORT_WAIT
    if isinstance(wait, list):
        return [shortened(value) for value in wait]
    # A generated number is sent as its digits: it holds like a string would.
    text = str(wait) if isinstance(wait, (int, float)) and not isinstance(wait, bool) else wait
    if isinstance(text, str) and HOLDING_WAIT.fullmatch(text):
        return SHORT_WAIT
    return wait


@schemathesis.hook
def before_call(context, case, kwargs):
    query = case.query
    if isinstance(query, dict) and "index" in query:
        query["wait"] = shortened(query.get("wait"))
