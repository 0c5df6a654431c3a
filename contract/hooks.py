"""Schemathesis hooks for MCP's contract run (loaded through SCHEMATHESIS_HOOKS).

Blocking queries (`?index=N&wait=D`) legitimately hold a request for up to
five minutes when N is at or past the current revision. To keep every
example short, a request that carries `index` gets `wait=50ms` in place of
any `wait` that would hold it: absent, or a value the operation's document
allows (config-svc allows an empty one, registry-svc does not). A `wait`
the document forbids is left as generated: it is a negative
example, the service refuses it at once, and replacing it would send a
valid request that schemathesis still counts as a negative one ("accepted
schema-violating request"). `wait` is fuzzed freely on requests without
`index` too (where the service parses and validates it all the same).
"""

import re

import schemathesis

SHORT_WAIT = "50ms"
# When an operation's document cannot be read: what either service allows.
ANY_DOCUMENTED_WAIT = re.compile(r"^([0-9]{1,9}(ms|s|m|h)?)?$")


def documented_wait(case):
    """The pattern the operation's document gives `wait`."""
    try:
        for parameter in case.operation.definition.raw.get("parameters", []):
            if parameter.get("in") == "query" and parameter.get("name") == "wait":
                return re.compile(parameter["schema"]["pattern"])
    except (AttributeError, KeyError, TypeError, re.error):
        pass
    return ANY_DOCUMENTED_WAIT


def shortened(wait, allowed):
    """`wait` with every value that would hold the request made short."""
    if wait is None:
        return SHORT_WAIT
    if isinstance(wait, list):
        return [shortened(value, allowed) for value in wait]
    # A generated number is sent as its digits: it holds like a string would.
    text = str(wait) if isinstance(wait, (int, float)) and not isinstance(wait, bool) else wait
    if isinstance(text, str) and allowed.search(text):
        return SHORT_WAIT
    return wait


@schemathesis.hook
def before_call(context, case, kwargs):
    query = case.query
    if isinstance(query, dict) and "index" in query:
        query["wait"] = shortened(query.get("wait"), documented_wait(case))
