"""Schemathesis hooks for MCP's contract run (loaded through SCHEMATHESIS_HOOKS).

Blocking queries (`?index=N&wait=D`) legitimately hold a request for up to
five minutes when N is at or past the current revision. To keep every
example short, a request that carries `index` gets `wait=50ms`; `wait` is
still fuzzed freely on requests without `index` (where the service parses
and validates it all the same).
"""

import schemathesis

SHORT_WAIT = "50ms"


@schemathesis.hook
def before_call(context, case, kwargs):
    query = case.query
    if isinstance(query, dict) and "index" in query:
        query["wait"] = SHORT_WAIT
