"""``epoch_arg``: the argparse type of every command-line time (epoch seconds or ISO 8601)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def epoch_arg(text: str) -> int:
    """Epoch seconds, or an ISO 8601 time (UTC unless it has an offset)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError("not epoch seconds or an ISO 8601 time: %r" % text) from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())
