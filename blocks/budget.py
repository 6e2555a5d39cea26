"""The Budget block: a ledger budget's limit and period, editable in the Prefect UI.

The ledger (blocks/ledger/) holds what was spent; this block holds what may be spent, so a
producer can raise a limit from the UI. Each run drawing on the budget applies an edit made in
the UI to the ledger, and otherwise writes the ledger's values back to the block, so
`takeflow budget set` and the UI stay in step:

```python
from blocks.budget import Budget
Budget(limit=5000, period="monthly", description="agency work").save("team-monthly", overwrite=True)
Budget.load("team-monthly").limit
```
"""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from prefect.exceptions import ObjectAlreadyExists
from pydantic import Field

from blocks.ledger import BudgetError, BudgetStatus, Ledger


class Budget(Block):
    """A named credit budget shared by every takeflow run that draws on it (1 credit = 0.01 USD).

    Example:
        ```python
        from blocks.budget import Budget
        budget = Budget.load("BLOCK_NAME")
        print(budget.limit, budget.period)
        ```
    """

    _block_type_name = "Takeflow Budget"
    _documentation_url = "https://docs.prefect.io/v3/concepts/blocks"
    _description = ("Limit and period of a takeflow credit budget; runs reserve every paid take against it. "
                    "The block's name is the budget's name.")

    limit: float | None = Field(None, ge=0, allow_inf_nan=False,
                                description="Most credits runs may spend (per period); empty for no cap.")
    period: Literal["daily", "weekly", "monthly"] | None = Field(
        None, description="The limit applies per calendar day, ISO week or month (UTC); empty for all time.")
    description: str = Field("", description="What the budget is for.")
    ledger_updated: float = Field(0.0, description="Kept by takeflow: when the ledger last matched this "
                                                   "block (edits of limit and period are applied on the next run).")


def sync_budget(ledger: Ledger, name: str) -> BudgetStatus:
    """The budget's status after applying a UI edit of its block (or saving the block first)."""
    try:
        block = Budget.load(name)
    except ValueError:
        block = None
    try:
        status = ledger.status(name)
    except BudgetError:
        if block is None:
            raise
        status = ledger.create_budget(name, block.limit, block.period, block.description, exist_ok=True)
    if block is not None and (block.limit, block.period) != (status.limit, status.period) \
            and status.updated_at <= block.ledger_updated + 1e-6:  # edited in the UI since
        status = ledger.set_budget(name, block.limit, block.period)
    if block is None or (block.limit, block.period, block.ledger_updated) != (
            status.limit, status.period, status.updated_at):
        block = Budget(limit=status.limit, period=status.period, description=status.description,
                       ledger_updated=status.updated_at)
        try:
            block.save(name, overwrite=True)
        except ObjectAlreadyExists:  # another run saved it (or its block type) at the same moment
            block.save(name, overwrite=True)
    return status
