"""Schemathesis hooks for MCP's contract run (loaded through SCHEMATHESIS_HOOKS).

Below: draws whose undocumented keys would vanish on the wire are dropped
(`filter_query`).

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


def query_names(context):
    """The query parameters the operation's document names."""
    try:
        return {
            parameter["name"]
            for parameter in context.operation.definition.raw.get("parameters", [])
            if parameter.get("in") == "query"
        }
    except (AttributeError, KeyError, TypeError):
        return set()


@schemathesis.hook
def filter_query(context, query):
    """Drop draws whose undocumented query keys would not reach the wire.

    `meta` is documented as an exploded form object (`meta.KEY=VALUE` on
    the wire), so its generated properties arrive as keys of their own. A
    negative draw may give it a property that violates the name pattern but
    holds an empty list (`{"tag": -5, "r": []}`): that property serializes
    to nothing, the request sent is a valid one (`?tag=-5`), and
    schemathesis would still count it as schema-violating ("accepted").
    Such draws are dropped; every other one is kept.
    """
    if not isinstance(query, dict):
        return True
    names = query_names(context)
    return not any(
        key not in names and value in ([], None, {}) for key, value in query.items()
    )
