"""Types of the path and query parameters that the routes share."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

INTEGER_MAX = 2**31 - 1  # the largest INTEGER PostgreSQL stores (ids, trial numbers)

# A whole number the database can hold: a larger one is a 422 naming the parameter, where
# PostgreSQL would fail the query (a 500) and SQLite would quietly take it.
StoredInt = Annotated[int, Field(ge=0, le=INTEGER_MAX)]
