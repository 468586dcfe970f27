"""Quick start: capture function calls to a local JSONL copy and give feedback.

Runs offline.  ``python examples/quickstart.py [path/to/calls.jsonl]``
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import logos_shift


def main(path: Path) -> None:
    ls = logos_shift.LogosShift(api_key=None, filename=str(path))

    @ls(dataset="sales")
    def add_sales(x: int, y: int) -> dict[str, int]:
        return {"sum": x + y}

    @ls(dataset="greetings")
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    r = add_sales(1, 2, logos_shift_metadata={"user_id": "12345"})
    ls.provide_feedback(r["logos_shift_id"], "success", score=1.0)

    with logos_shift.context(user_id="u42", plan="pro"):
        greet("Ada")
    ls.provide_feedback(logos_shift.last_call_id() or "", "failure", comment="too formal")

    ls.shutdown(timeout=5)
    print(f"captured to {path}:")
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "call":
            print(f"  call     {rec['id']}  dataset={rec['dataset']:<9} "
                  f"input={json.dumps(rec['input'])} output={json.dumps(rec['output'])} "
                  f"metadata={json.dumps(rec['metadata'])}")  # fmt: skip
        else:
            print(f"  feedback {rec['id']}  target={rec['target']} outcome={rec['outcome']}")
    stats = ls.stats()
    print(f"stats: captured={stats['captured']} sent={stats['sent']} "
          f"spooled={stats['spooled']} dropped={stats['dropped']}")  # fmt: skip


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "calls.jsonl"
    main(target)
