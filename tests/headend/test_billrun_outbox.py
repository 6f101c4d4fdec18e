"""Notifications of issued bills: webhook to a local HTTP server (a 500, then a retry after
back-off), e-mail to a local SMTP responder, console; the bill as text and HTML."""

import json
import socketserver
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from headend.billing.policy import OutboxPolicy, Policy
from headend.billing.render import render_html, render_text
from headend.billing.run import run_bills
from headend.notify.outbox import send_pending
from tests.headend.billrun_support import NOW, add_account, hourly, new_store, tou_rates


@pytest.fixture
def webhook():
    got, codes = [], [500]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(codes.pop(0) if codes else 200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/hook" % srv.server_port, got
    srv.shutdown()
    srv.server_close()


class SMTPSink(socketserver.StreamRequestHandler):
    """A minimal SMTP responder: enough of RFC 5321 for smtplib.send_message."""

    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 sink")
        mail = {"rcpt": [], "data": b""}
        while line := self.rfile.readline():
            cmd = line.decode().strip().upper()
            if cmd.startswith(("EHLO", "HELO")):
                self.reply("250 sink")
            elif cmd.startswith("MAIL FROM"):
                mail["from"] = line.decode().strip()[10:]
                self.reply("250 ok")
            elif cmd.startswith("RCPT TO"):
                mail["rcpt"].append(line.decode().strip()[8:])
                self.reply("250 ok")
            elif cmd == "DATA":
                self.reply("354 go")
                while (chunk := self.rfile.readline()) != b".\r\n":
                    mail["data"] += chunk
                self.server.mails.append(mail)
                self.reply("250 queued")
            elif cmd == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp():
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SMTPSink)
    srv.daemon_threads = True
    srv.mails = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], srv.mails
    srv.shutdown()
    srv.server_close()


def test_webhook_retry_email_and_console(db_target, webhook, smtp):
    url, posts = webhook
    port, mails = smtp
    with new_store(db_target) as s:
        add_account(s, "w", webhook=url)
        add_account(s, "e", email="e@example.org")
        add_account(s, "c")
        for a in ("w", "e", "c"):
            hourly(s, "m-" + a, tou_rates)
        run_bills(s, "2024-02", NOW, Policy(review_sample_pct=Decimal(0)))
        cfg = OutboxPolicy(
            smtp_host="127.0.0.1", smtp_port=port, mail_from="bills@utility.test", backoff_s=60
        )
        printed = []
        first = send_pending(s, NOW, cfg, console=printed.append)
        assert (first["sent"], first["retry"], first["failed"]) == (2, 1, 0)
        assert first["errors"][0]["error"].startswith("HTTP 500")
        [hook] = [r for r in s.outbox() if r["channel"] == "webhook"]
        assert (hook["state"], hook["attempts"], hook["next_attempt_at"]) == ("pending", 1, NOW + 60)
        assert send_pending(s, NOW + 59, cfg)["sent"] == 0  # not due yet
        second = send_pending(s, NOW + 60, cfg)
        assert second["sent"] == 1 and all(r["state"] == "sent" for r in s.outbox())
        assert len(posts) == 2 and posts[1]["account_id"] == "w" and posts[1]["total"] == "78.08"
        assert "TOTAL" in posts[1]["document"] and posts[1]["event"] == "bill.issued"
        [mail] = mails
        assert mail["rcpt"] == ["<e@example.org>"]
        body = mail["data"].decode()
        assert "Subject: Your bill for 2024-02: 78.08 CNY" in body and "text/html" in body
        assert len(printed) == 1 and "BILL c / 2024-02" in printed[0]
        bill = s.bill("e", "2024-02")
        assert bill["rendered_text"] and "<table>" in bill["rendered_html"]  # the copy sent


def test_failed_after_max_attempts(db_target):
    with new_store(db_target) as s:
        add_account(s, "x", webhook="http://127.0.0.1:9/nowhere")
        hourly(s, "m-x", tou_rates)
        run_bills(s, "2024-02", NOW, Policy(review_sample_pct=Decimal(0)))
        cfg = OutboxPolicy(max_attempts=2, backoff_s=10, timeout_s=2)
        assert send_pending(s, NOW, cfg)["retry"] == 1
        assert send_pending(s, NOW + 10, cfg)["failed"] == 1
        [row] = s.outbox()
        assert row["state"] == "failed" and row["attempts"] == 2 and "webhook" in row["last_error"]


def test_bill_documents_print_lines_and_rounding_rule(db_target):
    with new_store(db_target) as s:
        add_account(s, "d<&>")
        hourly(s, "m-d<&>", tou_rates)
        run_bills(s, "2024-02", NOW, Policy(review_sample_pct=Decimal(0)))
        bill, account = s.bill("d<&>", "2024-02"), s.account("d<&>")
        text = render_text(bill, account)
        assert "Energy" in text and "73.08 CNY" in text and "TOTAL" in text and "78.08" in text
        assert "Rounding: each line item rounded half-up to the minor unit" in text
        doc = render_html(bill, account)
        assert "d&lt;&amp;&gt;" in doc and "d<&>" not in doc and "<strong>78.08 CNY</strong>" in doc


def test_outbox_keys_are_partial_and_still_idempotent(db_target):
    """m017: (bill_id, channel) indexes bill notices only, (alert_id, channel) alert notices only;
    queuing either twice still stores it once."""
    with new_store(db_target) as s:
        add_account(s, "k", email="k@example.org")
        hourly(s, "m-k", tou_rates)
        run_bills(s, "2024-02", NOW, Policy(review_sample_pct=Decimal(0)))
        if s.dialect == "postgresql":
            sql = "SELECT indexdef FROM pg_indexes WHERE tablename = 'outbox'"
            sql += " AND schemaname = current_schema()"
        else:
            sql = "SELECT sql FROM sqlite_master WHERE tbl_name = 'outbox'"
        defs = [r[0] for r in s.conn.execute(sql)]
        for column in ("bill_id", "alert_id"):
            [d] = [d for d in defs if d and "idx_outbox_%s_channel" % column in d]
            assert "WHERE" in d.upper() and ("%s IS NOT NULL" % column) in d.replace("(", "").replace(")", "")
        bill = s.bill("k", "2024-02")
        s.queue_notifications("2024-02", ["k"], NOW)  # again: nothing new
        assert [(r["bill_id"], r["channel"]) for r in s.outbox()] == [(bill["id"], "email")]
        assert s.queue_alert_notification(7, "email", "ops@example.org", {"a": 1}, NOW) == 1
        assert s.queue_alert_notification(7, "email", "ops@example.org", {"a": 1}, NOW) == 0
        assert s.queue_alert_notification(7, "webhook", "https://x", {"a": 1}, NOW) == 1
        assert len(s.outbox()) == 3
