"""Running `nanosim` in process and asserting its one-line errors."""
from __future__ import annotations

import pytest

from nanosim.cli import main

TINY_RUN = ["--workload", "chatbot", "--num-requests", "8", "--rate", "20",
            "--model", "qwen3-0.6b", "--gpu", "h100", "--no-progress"]


def rc_of(argv: list[str]) -> int:
    """main()'s exit code, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """argv fails with exit 2 and exactly one stderr line containing every needle."""
    capsys.readouterr()
    rc = rc_of(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def forbid(monkeypatch, target: str) -> None:
    """Any call of ``module.attr`` fails the test (the command must stop before it)."""
    def boom(*a, **k):
        pytest.fail(f"{target} ran before the output check")
    monkeypatch.setattr(target, boom)
