"""The README's code runs as written: every Python block, and every command it lists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README.read_text(), flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
GROUPS = ("engine", "bench", "stream", "data")  # commands with subcommands


def listed_commands() -> set[str]:
    """``engine scheduler``, ``check``, …: the command-line block lists one per unindented line."""
    commands = set()
    for _, code in BLOCKS:
        lines = [line for line in code.splitlines() if line and not line[0].isspace()]
        if lines and all(line.startswith("taskbench ") for line in lines):
            for words in map(str.split, lines):
                commands.add(" ".join(words[1:3] if words[1] in GROUPS else words[1:2]))
    return commands


def test_the_readme_has_python_to_run() -> None:
    assert PYTHON


@pytest.mark.parametrize("code", PYTHON, ids=[f"block{i}" for i in range(len(PYTHON))])
def test_python_block_runs_as_written(code: str, tmp_path: Path) -> None:
    script = tmp_path / "readme_block.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_every_listed_command_exists() -> None:
    commands = listed_commands()
    assert {"engine scheduler", "bench shuffle", "data generate", "check"} <= commands
    for command in sorted(commands):
        result = subprocess.run(
            [sys.executable, "-m", "taskbench.cli", *command.split(), "--help"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, (command, result.stderr)
