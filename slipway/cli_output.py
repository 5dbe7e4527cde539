"""How `slipway` prints for people: aligned tables, one line per event, a progress bar redrawn in place.

Tables and results go to stdout; event lines and bars go to stderr, so that `--json` output (or a
table) on stdout stays clean when stderr is a terminal. Bars are drawn only on a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

BAR_WIDTH = 30


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, headers in capitals; '-' for an empty cell."""
    cells = [[str(h).upper() for h in headers]] + [["-" if c in (None, "") else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def ago(timestamp: str | None, now: datetime | None = None) -> str:
    """'45 s ago', '7 min ago', '3 h ago', '2 d ago' for an ISO 8601 time from the API."""
    if not timestamp:
        return ""
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    done = round(width * min(max(fraction, 0.0), 1.0))
    return "[" + "#" * done + "." * (width - done) + "]"


def environments(body: dict) -> str:
    rows = []
    for env in body.get("results", []):
        deployments = [d for service in env["services"] for d in service["deployments"]] or [{}]
        for d in deployments:
            share = f"{d['traffic_percent']}%" if d else ""
            rows.append([env["name"], env["target"], env.get("proxy_port"), d.get("release") and f"#{d['release']}",
                         d.get("model"), d.get("version"), d.get("role"), share, ago(d.get("updated_at"))])
    return table(["environment", "target", "port", "release", "model", "version", "role", "traffic", "changed"],
                 rows)


def releases(body: dict) -> str:
    rows = [[f"#{r['id']}", r["model"], r["version"], r["status"], ago(r["created_at"]), r["failure_reason"]]
            for r in body.get("results", [])]
    return table(["release", "model", "version", "status", "created", "why"], rows)


def _stage_note(stage: dict) -> str:
    if stage["status"] in ("running", "waiting"):
        return f"{stage['progress']:.0f}% {stage.get('step') or ''}".strip()
    return stage.get("error") or ""


def release(body: dict) -> str:
    head = f"release #{body['id']}  {body['model']} {body['version']}  {body['status']}"
    if body.get("failure_reason"):
        head += f"\n  why: {body['failure_reason']}"
    stages = table(["stage", "status", "attempt", "took", "note"],
                   [[s["name"], s["status"], s["attempt"] or "",
                     f"{s['duration_s']:.1f} s" if s.get("duration_s") is not None else "", _stage_note(s)]
                    for s in body.get("stages", [])])
    approvals = [f"  {a['decision']}d at {a['gate']} by {a['user']}" + (f": {a['comment']}" if a["comment"] else "")
                 for a in body.get("approvals", [])]
    return "\n".join([head, "", stages, *(["", "approvals:", *approvals] if approvals else [])])


def result(command: str, body: dict) -> str:
    """One line for what a command did (push, approve, reject, rollback, canary, drill)."""
    if command == "push":
        r, v = body["release"], body["version"]
        verb = "posted" if body.get("created", True) else "already posted (same Idempotency-Key)"
        return f"{verb}: {r['model']} {r['version']} (version #{v['id']}) -> release #{r['id']} ({r['status']})"
    if command in ("approve", "reject"):
        return f"{body['decision']}d at gate {body['gate']} by {body['user']}"
    if command == "rollback":
        shares = ", ".join(f"release #{k}: {v}%" for k, v in body["shares"].items())
        return f"{body['action']} of {body['model']} by {body['actor'] or 'system'}: {shares}"
    if command == "canary":
        return f"canary of release #{body['release']} {body['status']}: {body['verdict']}"
    if command == "shadow":
        return (f"release #{body['shadow']} in shadow of #{body['active']} for {body['model']} in "
                f"{body['environment']}: {body['state']}, {body['figures'].get('pairs', 0)} pairs, verdict "
                f"{body['verdict']}" + (f" ({body['reason']})" if body["reason"] else ""))
    if command == "drill":
        where = f"drill of {body['model']} in {body['environment']}"
        if body["result"] != "ok":
            return f"{where} failed: {body['reason']}"
        return (f"{where} ok: back to #{body['previous']} in {body['back_ms']} ms, "
                f"forward to #{body['current']} in {body['forward_ms']} ms")
    return ""


class Events:
    """While waiting: one line per stage change on ``out``, and on a terminal the running stage's bar,
    redrawn in place under them."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self.seen: dict[str, str] = {}
        self.status = ""
        self.drawn = False

    def update(self, body: dict) -> None:
        lines = []
        if body["status"] != self.status:
            lines.append(f"release #{body['id']} {body['status']}"
                         + (f": {body['failure_reason']}" if body.get("failure_reason") else ""))
            self.status = body["status"]
        running = None
        for stage in body.get("stages", []):
            if self.seen.get(stage["name"], "pending") != stage["status"]:
                detail = stage.get("error") if stage["status"] == "failed" else ""
                lines.append(f"  {stage['name']:<16} {stage['status']}" + (f": {detail}" if detail else ""))
                self.seen[stage["name"]] = stage["status"]
            if stage["status"] == "running":
                running = stage
        self._clear()
        stamp = time.strftime("%H:%M:%S")
        for line in lines:
            self.out.write(f"{stamp} {line}\n")
        if running is not None and self.tty:
            self.out.write(f"  {running['name']:<16} {bar(running['progress'] / 100)} {running['progress']:3.0f}%"
                           f" {running.get('step') or ''}"[:160])
            self.drawn = True
        self.out.flush()

    def _clear(self) -> None:
        if self.drawn:
            self.out.write("\r\033[K")
            self.drawn = False

    def close(self) -> None:
        self._clear()
        self.out.flush()
