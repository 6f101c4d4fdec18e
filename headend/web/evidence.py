"""An alert's or a work order's evidence (a JSON object the alert rules wrote, see
``headend/alerts/rules*.py``) as tables a person reads: named fields, times as ISO UTC,
durations as ``6 d 6 h``, balances in the account's currency, energy in kWh, events by name
with their named details. Nested objects become nested tables, lists of objects a table
with a column per field.

The value of a field is read from its name, as the rules name them: ``ts``, ``*_ts``,
``*_at``, ``last_seen`` epoch seconds; ``*_s`` seconds; ``*_wh`` and ``wh`` Wh;
``*_wh_per_h`` Wh per hour; ``*_pct`` percent; ``balance``, ``*_balance``, ``difference``,
``tolerance``, ``threshold``, ``amount`` milli-units of currency; ``code`` an event code
(with ``detail`` its detail); ``flags`` a reading's flag bits; ``online`` yes or no;
``tariff_id`` a tariff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from headend.console.decode import flag_words
from headend.web import fmt, tariffs
from headend.web.layout import Markup, esc

MONEY = {"balance", "difference", "tolerance", "threshold", "amount"}
TIMES = {"ts", "last_seen", "first_seen"}
LABELS = {
    "ts": "time",
    "code": "event",
    "first_ts": "first event",
    "last_ts": "last event",
    "wh": "energy",
    "seq": "seq",
    "seqs": "seqs",
    "missed_intervals": "missed intervals",
    "history_days": "days of history",
    "meter_events": "meter events",
}
SUFFIXES = ("_wh_per_h", "_ts", "_at", "_s", "_wh", "_pct")
FIRST = ("seq", "ts", "code", "detail")  # the first columns of a table of events or readings


def _is_time(key) -> bool:
    key = str(key)
    return key in TIMES or key.endswith(("_ts", "_at"))


def label(key: str) -> str:
    """A field's name as words: ``silent_s`` -> ``silent``, ``last_seen`` -> ``last seen``."""
    key = str(key)
    if key in LABELS:
        return LABELS[key]
    for suffix in SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    return key.replace("_", " ")


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class Reader:
    """Formats the values of one piece of evidence: ``currency`` of the account's tariff,
    ``tariff_name(tariff_id)`` a tariff's name."""

    def __init__(self, currency: str = "", tariff_name: Callable[[str], str] | None = None) -> None:
        self.currency = currency
        self.tariff_name = tariff_name or str

    def scalar(self, key: str, v, parent: Mapping | None = None) -> str:
        key = str(key)
        if v is None:
            return fmt.NONE
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, list):
            return ", ".join(self.scalar(key, x) for x in v) or fmt.NONE
        if isinstance(v, Mapping):
            return fmt.pairs_text((label(k), self.scalar(k, x, v)) for k, x in v.items())
        if not _is_num(v):
            if key == "tariff_id":
                return self.tariff_name(str(v))
            return str(v)
        if _is_time(key):
            return fmt.iso(v)
        if key.endswith("_wh_per_h"):
            return "%s Wh/h" % v
        if key.endswith("_s"):
            return fmt.duration(v)
        if key == "wh" or key.endswith("_wh"):
            return fmt.wh(v)
        if key.endswith("_pct"):
            return "%s %%" % v
        if (key in MONEY or key.endswith("_balance")) and isinstance(v, int):
            return fmt.money(v, self.currency)
        if key == "code":
            return "%s (%d)" % (fmt.event_name(int(v)), v)
        if key == "online":
            return "yes" if v == 1 else "no"
        if key == "flags" and isinstance(v, int):
            return flag_words(v)
        return str(v)

    def cell(self, key: str, v, row: Mapping) -> str:
        if key == "detail" and "code" in row and _is_num(row["code"]):
            return fmt.pairs_text(fmt.event_fields(int(row["code"]), v, self.currency)) or fmt.NONE
        return self.scalar(key, v, row)

    def html(self, value) -> Markup:
        """The evidence as HTML: a key-value table (nested for objects, a table per list of
        objects), every value escaped."""
        if isinstance(value, Mapping):
            if not value:
                return Markup('<p class="note">none</p>')
            rows = "".join(
                "<tr><th>%s</th><td>%s</td></tr>" % (esc(label(k)), self._value(k, v, value))
                for k, v in value.items()
            )
            return Markup('<div class="tw"><table class="kv evidence">%s</table></div>' % rows)
        if isinstance(value, list) and value and all(isinstance(x, Mapping) for x in value):
            cols = [k for k in FIRST if any(k in row for row in value)]
            for row in value:
                cols += [k for k in row if k not in cols]
            head = "".join("<th>%s</th>" % esc(label(k)) for k in cols)
            body = "".join(
                "<tr>%s</tr>"
                % "".join(
                    "<td%s>%s</td>"
                    % (
                        ' class="nw"' if _is_time(k) else "",
                        esc(self.cell(k, row[k], row) if k in row else ""),
                    )
                    for k in cols
                )
                for row in value
            )
            return Markup(
                '<div class="tw"><table class="evidence"><thead><tr>%s</tr></thead><tbody>%s</tbody>'
                "</table></div>" % (head, body)
            )
        return Markup(esc(self.scalar("", value)))

    def _value(self, key: str, v, parent: Mapping) -> str:
        if isinstance(v, Mapping) and v:
            return self.html(v)
        if isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            return self.html(v)
        return esc(self.cell(key, v, parent))


def evidence_html(evidence, currency: str = "", tariff_name: Callable[[str], str] | None = None) -> Markup:
    return Reader(currency, tariff_name).html(evidence)


def evidence_for(store, account_id: str | None, evidence) -> Markup:
    """``evidence_html`` in the currency of the account's tariff, tariffs by name."""
    return evidence_html(
        evidence,
        tariffs.account_tariff(store, account_id).currency,
        lambda tid: tariffs.tariff_info(store, tid).name,
    )
