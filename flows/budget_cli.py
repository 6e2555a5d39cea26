"""`takeflow budget create|show|set|history|settle` and `takeflow estimate`: the ledger from the terminal.

They read and write the shared state database directly (TAKEFLOW_STATE_URL, default
$TAKEFLOW_HOME/state.db) and start no Prefect server, except `settle`, which loads the provider
blocks (from PREFECT_API_URL, else the embedded server). With PREFECT_API_URL set, `create` and
`set` also save the budget's block, so the Prefect UI shows the new limit at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from blocks.ledger import BudgetError, BudgetStatus, ledger_for, parse_credits


def add_budget_commands(commands) -> None:
    budget = commands.add_parser("budget", help="named credit budgets shared by runs: create, show, set, history, settle")
    actions = budget.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a budget")
    create.add_argument("name", help="lowercase letters, digits and dashes, e.g. team-monthly")
    create.add_argument("--limit", required=True, help="credits runs may spend (per period); 'none' for no cap")
    create.add_argument("--period", default="none", help="daily, weekly, monthly or none (default)")
    create.add_argument("--description", default="", help="what the budget is for")
    show = actions.add_parser("show", help="limit, spent, reserved and left of one budget, or of all")
    show.add_argument("name", nargs="?")
    change = actions.add_parser("set", help="change a budget's limit or period")
    change.add_argument("name")
    change.add_argument("--limit", help="new limit in credits, or 'none' for no cap")
    change.add_argument("--period", help="daily, weekly, monthly or none")
    history = actions.add_parser("history", help="a budget's reservations, charges and releases")
    history.add_argument("name")
    history.add_argument("--last", type=int, default=50, help="how many entries (default 50)")
    settle = actions.add_parser("settle", help="decide held creates of unknown outcome by each provider's usage "
                                               "record, or one by hand once you checked the provider's dashboard")
    by_hand = settle.add_mutually_exclusive_group()
    by_hand.add_argument("--charged", metavar="ENTRY", help="count this held create (entry id or its start) as charged")
    by_hand.add_argument("--not-charged", metavar="ENTRY", help="release this held create: it made no task")


def run_budget_command(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except BudgetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _limit(text: str) -> float | None:
    return None if text.strip().lower() == "none" else parse_credits(text, "--limit")


def _run(args: argparse.Namespace) -> int:
    ledger = ledger_for()
    if args.action == "create":
        status = ledger.create_budget(args.name, _limit(args.limit), args.period, args.description)
        _save_block(ledger, args.name)
        print(_describe(status))
    elif args.action == "set":
        if args.limit is None and args.period is None:
            raise BudgetError("budget set: give --limit CREDITS and/or --period PERIOD")
        status = ledger.set_budget(args.name, _limit(args.limit) if args.limit is not None else "keep",
                                   args.period if args.period is not None else "keep")
        _save_block(ledger, args.name)
        print(_describe(status))
    elif args.action == "show":
        budgets = [ledger.status(args.name)] if args.name else ledger.budgets()
        if not budgets:
            print("no budgets yet; create one with takeflow budget create NAME --limit CREDITS")
        for status in budgets:
            print(_describe(status))
    elif args.action == "settle" and (args.charged or args.not_charged):
        entry = _held_entry(ledger, args.charged or args.not_charged)
        ledger.settle_held(entry, bool(args.charged), f"{entry.note}; decided by hand: "
                                                      f"{'charged' if args.charged else 'not charged'}")
        print(f"{entry.label}: {entry.credits if args.charged else 0:g} credits counted")
    elif args.action == "settle":
        _settle_held(ledger)
    else:
        from tasks.report import history_rows

        rows = history_rows(ledger, ledger.status(args.name).name, args.last)
        print(f"{'when (UTC)':19}  {'status':9} {'credits':>9} {'estimate':>9}  {'what':44} {'project':20} note")
        for row in rows:
            print(f"{row['when']:19}  {row['status']:9} {row['credits']:>9g} {row['estimate']:>9g}  "
                  f"{row['what'][:44]:44} {row['project'][:20]:20} {row['note']}")
        print(_describe(ledger.status(args.name)))
    return 0


def _settle_held(ledger) -> None:
    """What runs do at their start and end, on demand: held creates decided where the provider's
    usage record can (tasks/spend.py `settle_unknown_creates`), and what stays held, with why."""
    from blocks.registry import load_provider
    from tasks.spend import settle_unknown_creates

    names = sorted({entry.task_id.partition(":")[0] for entry in ledger.held()})
    for line in settle_unknown_creates(ledger, {name: load_provider(name) for name in names}):
        print(line)
    held = ledger.held()
    for entry in held:
        print(f"still held: {entry.id[:8]} {entry.label}: {entry.credits:g} credits ({entry.note})")
    if not held:
        print("nothing held: every create of unknown outcome is decided")


def _held_entry(ledger, start: str):
    found = [entry for entry in ledger.held() if entry.id.startswith(start)]
    if len(found) != 1:
        raise BudgetError(f"settle: '{start}' names {len(found)} held entries; give the id `takeflow budget "
                          "settle` lists (its first 8 characters are enough)")
    return found[0]


def _describe(status: BudgetStatus) -> str:
    cap = f"limit {status.limit:g}" if status.limit is not None else "no cap"
    period = f" per {status.period.removesuffix('ly').replace('dai', 'day')} ({status.period_key})" if status.period else ""
    left = f", {status.left:g} left" if status.left is not None else ""
    return f"{status.name}: {cap}{period}; {status.spent:g} spent, {status.reserved:g} reserved{left}"


def _save_block(ledger, name: str) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        return
    from blocks.budget import sync_budget

    sync_budget(ledger, name)


def precheck(storyboard, budget: float | None, budget_name: str | None, load) -> str | None:
    """The one-line problem that would stop a produce before any spend (unknown budget, a model
    without a price), found without starting Prefect; None when there is none. `load` loads a
    provider by name."""
    from tasks.estimate import PriceMissing, plan_run

    name = budget_name or (None if budget is not None else storyboard.defaults.budget_name)
    try:
        if name:
            ledger_for().status(name)
        plan_run(storyboard, None, load).estimate(storyboard)
    except (BudgetError, PriceMissing) as exc:
        return str(exc)
    return None


def print_estimate(storyboard, takes: int | None, budget: float | None, budget_name: str | None,
                   load) -> int:
    """`takeflow estimate`: the per-shot, per-take table and the budget it draws on; 3 when over.
    `load` loads a provider by name."""
    from blocks.providers import GenerationError
    from tasks.estimate import PriceMissing, plan_run
    from tasks.gate import fits, over_message, project_budget

    ledger = ledger_for()
    run = plan_run(storyboard, takes, load)
    plans = run.plans
    try:
        estimate = run.estimate(storyboard, paid=lambda keys: ledger.paid_keys(keys, held=True))
        name = budget_name or (None if budget is not None else storyboard.defaults.budget_name)
        status = ledger.status(name) if name else _project_status(ledger, project_budget(storyboard.project_slug),
                                                                  budget if budget is not None
                                                                  else storyboard.defaults.budget)
    except (GenerationError, PriceMissing, BudgetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{storyboard.title}: {len(plans)} shots\n")
    print(estimate.text())
    print(f"\n{_describe(status)}")
    if not fits(estimate, status):
        print(f"error: {over_message(estimate, status)}; raise the limit, use fewer takes, or set "
              "defaults.budget_policy: fit", file=sys.stderr)
        return 3
    return 0


def _project_status(ledger, name: str, limit: float | None) -> BudgetStatus:
    """A storyboard's own budget as a run would set it, without writing it."""
    try:
        current = ledger.status(name)
    except BudgetError:
        return BudgetStatus(name, limit, None, "all", 0.0, 0.0, "", 0.0)
    return BudgetStatus(name, limit, None, current.period_key, current.spent, current.reserved, "", 0.0)
