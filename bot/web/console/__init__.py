"""The centre's console: server-rendered pages (Jinja2 + htmx) for the desk, the director, the
council secretary and any staff member who wants a list.

    /console/login            sign in (password, demo persona), /console/logout
    /console/password/{token} set a password through a one-time link
    /console/cases            the case list: filters, search, pages, CSV and XLSX
    /console/cases/{number}   a case: card, photos, voice, location, timeline, actions
    /console/contact-views    who saw a resident's phone or address (director)
"""

from __future__ import annotations

from fastapi import APIRouter

from bot.web.console import cases, council, dashboard, login, triage

router = APIRouter()
router.include_router(login.router)
router.include_router(cases.router)
# The director's dashboard (/console/figures), the front desk's queue (/console/triage), the
# council board (/console/council).
router.include_router(dashboard.router)
router.include_router(triage.router)
router.include_router(council.router)
