"""Notifications: the outbox that bill runs and alerts fill (``store``), delivered with retries
(``outbox``) on its channels (``channels``: console, webhook, SMTP); ``cli``: outbox send.
Billing and alerts render their own messages (``headend.billing.notice``,
``headend.alerts.notify``); they import neither each other nor this package."""
