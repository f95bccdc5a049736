"""`portal page`: a small local page (127.0.0.1, a secret in its URL) with every host's services and actions.

``view`` builds what the page shows from `status --all` reports (pure), ``guard`` decides which
requests are let in (pure), ``assets`` is the page itself (no CDN), ``server`` serves it.
"""
