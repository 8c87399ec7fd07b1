"""`GET /api/figures?by=grid&period=2026-11`: the figures the centre is judged on, as JSON.

For a signed-in staff member of the web chat: the director gets their community by `by`
(community, committee, grid or worker; default grid), anyone else their own figures (`own`
true, one row). `period` is a month (2026-11), a range (2026-11-01..2026-11-15), a year or a
day; by default this month to date. `format=csv` gives the same as a spreadsheet download
(UTF-8 with a byte-order mark, so Excel reads the Chinese). A resident gets 403; a bad `by`,
`period` or `format` 422 with the reason.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, HTTPException, Response

from bot.web.deps import Address, Services, answers, web_identity
from handlers import periods
from handlers.errors import BadInput
from handlers.figures import tally
from handlers.registry import directory
from storage import tables as t
from storage.unit_of_work import UnitOfWork

router = APIRouter()


@router.get("/api/figures", response_model=None, responses=answers(401, 403, 422))
def get_figures(address: Address, services: Services, by: str = "grid", period: str = "",
                format: str = "json") -> dict[str, Any] | Response:
    with UnitOfWork(services.engine) as uow:
        ident = web_identity(uow.session, address)
        person = uow.session.get(t.Person, ident.person_id) if ident.person_id else None
        if person is None:
            raise HTTPException(status_code=403, detail="figures are for staff")
        now = services.clock.now()
        today = directory.calendar_of(directory.community(uow.session, person.community_id)).local_date(now)
        try:
            if by not in tally.GROUPINGS:
                raise BadInput(f"by must be one of {', '.join(tally.GROUPINGS)}")
            if format not in ("json", "csv"):
                raise BadInput("format must be json or csv")
            start, end = periods.period(period, today)
        except BadInput as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        report = tally.for_staff(uow.session, person, start, end, by, now)
        if format == "json":
            return report.as_dict()
        lang = ident.language or person.language
        return _csv(tally.table(report, lang), f"figures-{start.isoformat()}-{end.isoformat()}.csv")


def _csv(rows: list[list[object]], filename: str) -> Response:
    """A spreadsheet download; the byte-order mark lets Excel read the Chinese as UTF-8."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return Response(("\ufeff" + buffer.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
