"""Pure presentation helpers of the dashboard: a record's row, its conversation, words."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from logos_shift.server.stats.savings import PriceOf, cost_of


def when(ts: Any) -> str:
    """Return a timestamp (ISO text or Unix seconds) as ``YYYY-MM-DD HH:MM:SS`` UTC.

    Args:
        ts: the value.

    Returns:
        The text ('' when absent).
    """
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return str(ts or "").replace("T", " ")[:19]


def usd(value: float | None) -> str:
    """Return a cost as dollars (``—`` when unknown).

    Args:
        value: USD, or None.

    Returns:
        The text.
    """
    if value is None:
        return "—"
    return f"${value:,.6f}" if abs(value) < 1 else f"${value:,.2f}"


def pct(value: float | None) -> str:
    """Return a rate as a percentage (``—`` when unknown).

    Args:
        value: a rate in [0, 1], or None.

    Returns:
        The text.
    """
    return "—" if value is None else f"{value * 100:.1f}%"


def summary(record: dict[str, Any], fb: dict[str, Any], price_of: PriceOf) -> dict[str, Any]:
    """Return the fields of one calls-list row.

    Args:
        record: the stored call record.
        fb: its feedback summary (``outcome, score, count``).
        price_of: the price lookup.

    Returns:
        ``id, when, dataset, model, route, variant, latency_ms, tokens, cost, outcome,
        error, preview``.
    """
    usage = record.get("usage") if isinstance(record.get("usage"), dict) else {}
    tin = int(usage.get("input_tokens") or 0) if isinstance(usage, dict) else 0
    tout = int(usage.get("output_tokens") or 0) if isinstance(usage, dict) else 0
    model = record.get("served_model") or record.get("requested_model")
    latency = record.get("latency_ms")
    return {
        "id": str(record.get("id", "")),
        "when": when(record.get("ts")),
        "dataset": record.get("dataset"),
        "model": model,
        "route": record.get("route"),
        "variant": record.get("variant"),
        "latency_ms": f"{latency:.0f}" if isinstance(latency, (int, float)) else "—",
        "tokens": f"{tin} / {tout}",
        "cost": usd(cost_of(price_of(str(model) if model else None), tin, tout)),
        "outcome": fb.get("outcome") or "no feedback",
        "error": bool(record.get("error")) or bool(record.get("fallback")),
        "preview": _preview(record),
    }


def _preview(record: dict[str, Any]) -> str:
    """The last user message, cut to 80 characters (what the list shows of a call)."""
    users = [t["text"] for t in conversation(record) if t["role"] == "user"]
    text = " ".join(users[-1].split()) if users else ""
    return text if len(text) <= 80 else text[:79] + "…"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") if isinstance(p, dict) else None for p in content]
        if parts and all(isinstance(p, str) for p in parts):
            return "\n".join(str(p) for p in parts)
    return json.dumps(content, indent=2, ensure_ascii=False)


def conversation(record: dict[str, Any]) -> list[dict[str, str]]:
    """Return the call's messages and answer as ``[{"role", "text"}]`` (chat order).

    Handles the OpenAI chat and Anthropic messages shapes; anything else is
    shown as JSON.  The text is rendered escaped by the template.

    Args:
        record: the stored call record.

    Returns:
        The turns.
    """
    turns: list[dict[str, str]] = []
    inp = record.get("input")
    if isinstance(inp, dict):
        if inp.get("system"):
            turns.append({"role": "system", "text": _text(inp["system"])})
        for m in inp.get("messages") or []:
            if isinstance(m, dict):
                turns.append({"role": str(m.get("role", "?")), "text": _text(m.get("content"))})
    out = record.get("output")
    if isinstance(out, dict):
        for choice in out.get("choices") or []:
            msg = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(msg, dict):
                text = _text(msg.get("content")) if msg.get("content") is not None else ""
                if msg.get("tool_calls"):
                    text += ("\n" if text else "") + _text(msg["tool_calls"])
                turns.append({"role": str(msg.get("role", "assistant")), "text": text})
        if out.get("type") == "message" and "content" in out:
            turns.append({"role": str(out.get("role", "assistant")), "text": _text(out["content"])})
    return turns


_STATUS = {
    "training": "Training the fine-tuned model; all traffic is on control ({control}).",
    "evaluating": "Evaluating the fine-tuned model offline; all traffic is on control.",
    "canary": "Canary: {share} of users get {variant} (stage {stage} of {stages}); "
    "the rest stay on {control}.",
    "paused": "Paused by hand at {share} on {variant}: nothing advances or rolls back "
    "until resumed.",
    "promoted": "Promoted: all traffic is on {variant}.",
    "rolled_back": "Rolled back: all traffic is on control ({control}).",
    "failed": "Failed: the fine-tune did not produce a model; all traffic is on control.",
}


def status_words(state: dict[str, Any], share: float) -> str:
    """Return a rollout state in one sentence.

    Args:
        state: ``RolloutState.to_json()``.
        share: the variant's share now (0-1).

    Returns:
        The sentence.
    """
    template = _STATUS.get(str(state.get("status")), "{status}")
    return template.format(
        status=state.get("status"),
        share=pct(share),
        variant=state.get("variant_model") or "the fine-tuned model",
        control=state.get("control_model") or "control",
        stage=int(state.get("stage_index") or 0) + 1,
        stages=len(state.get("stages") or ()),
    )
