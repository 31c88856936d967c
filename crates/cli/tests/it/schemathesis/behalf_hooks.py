"""Schemathesis hooks for Behalf's run (crates/cli/tests/it/schemathesis.rs).

A read given `min_position` waits up to `wait_ms` (at most 30 s) for the views to reach
it; a drawn position is usually far past the log's head, so every such read would wait
its full `wait_ms`. Whole numbers above 100 are cut to 100 ms so that the run is not
spent waiting; anything else (a wrong type, a negative number) is sent as drawn.
"""

import schemathesis


@schemathesis.hook
def map_query(ctx, query):
    if query and isinstance(query.get("wait_ms"), int) and not isinstance(query["wait_ms"], bool):
        if query["wait_ms"] > 100:
            query["wait_ms"] = 100
    return query
