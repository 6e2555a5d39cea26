"""Runway's usage record on the simulator: `POST /v1/organization/usage`, shaped as the runwayml SDK
5.24.0 has it (resources/organization/organization.py, types/organization_retrieve_usage_params.py
and _response.py): a body {startDate?, beforeDate?} (YYYY-MM-DD, UTC; beforeDate not inclusive,
defaults to thirty days after startDate, which defaults to thirty days ago, and is at most 90 days
after it) answered by {models, results: [{date, usedCredits: [{model, amount}]}]}.

The amounts come from the simulator's own record of charges (`record()`): a finished task counts
what it charged, on the UTC day it was created. A task still queued or running counts its price:
Runway takes the credits when the task is created and refunds what it does not bill (◐ "SAFETY.INPUT
is not refundable", providers.md §1; the usage amounts are "net", "negative if refunds exceeded
charges"), so a create that made a task shows in the usage at once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

from simulators.base import Request, Response, route

LIVE = ("queued", "throttled", "running")


class UsageRoutes:
    """Mixed into RunwaySimulator: the account's credits used per day and model."""

    @route("POST", r"/v1/organization/usage", "usage")
    def usage(self, request: Request) -> Response:
        body, refused = self.json_body(request)  # the version header, and a JSON body ({} or none: defaults)
        if refused:
            return refused
        try:
            start, before = _window(body if isinstance(body, dict) else {})
        except ValueError as exc:
            return Response(400, {"error": str(exc)})
        used: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        with self.lock:
            tasks = list(self.tasks.values())
        for task in tasks:
            day = task.extra.get("created_at", "")[:10]
            if not day or not start <= date.fromisoformat(day) < before:
                continue
            status, _ = self.status(task)
            used[day][task.model] += int(task.extra["credits"]) if status in LIVE else int(self.charge(task, status))
        results = [{"date": day, "usedCredits": [{"model": model, "amount": amount}
                                                 for model, amount in sorted(models.items())]}
                   for day, models in sorted(used.items())]
        return Response(200, {"models": sorted({m for models in used.values() for m in models}), "results": results})


def _window(body: dict) -> tuple[date, date]:
    """(startDate, beforeDate) of a usage request, with the API's defaults and limits."""
    try:
        today = datetime.now(timezone.utc).date()
        start = date.fromisoformat(body["startDate"]) if body.get("startDate") else today - timedelta(days=30)
        before = date.fromisoformat(body["beforeDate"]) if body.get("beforeDate") else start + timedelta(days=30)
    except (TypeError, ValueError):
        raise ValueError("startDate and beforeDate must be dates in ISO-8601 format (YYYY-MM-DD).") from None
    if not start < before <= start + timedelta(days=90):
        raise ValueError("beforeDate must be after startDate and at most 90 days after it.")
    return start, before
