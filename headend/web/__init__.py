"""The operators' web dashboard (``headend web --port N``): standard library only.

``server`` (ThreadingHTTPServer, sessions, CSRF, roles, security headers), ``routes`` (the
one URL table), ``auth`` (scrypt password keys, session tokens, login rate limiting),
``pages_*`` (server-rendered HTML per area), ``api`` (read-only JSON under /api/),
``layout`` (escaping HTML helpers), ``charts`` (inline SVG), ``loadprofile`` and ``data``
(read models). All SQL lives in ``headend.web.store``; users are added with
``headend web user add`` (``cli``).
"""
