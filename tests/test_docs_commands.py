"""Every `ladder ...` line in a code block of README.md and docs/*.md runs as written, at least as far as it
can without training or a cloud: it parses with the verb's own parser, its config file loads with its
`--config.*` overrides, `ladder plan` lines run in full (pure Python, instant) with -o sent to tmp and
`ladder run` lines run as --dry-run."""

import re
import shlex
from pathlib import Path

import pytest

from ladder import cli
from ladder.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def command_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command) for each `ladder ...` line of a fenced or indented code block; continuation
    lines are joined, a `$ ` prompt dropped and `a && ladder b` split."""
    out, lines, fenced, indented, prev_blank, i = [], text.splitlines(), False, False, True, 0
    while i < len(lines):
        line, start = lines[i], i + 1
        if line.lstrip().startswith("```"):
            fenced, i = not fenced, i + 1
            continue
        if not fenced:
            indented = line.startswith("    ") and (prev_blank or indented)
            prev_blank = not line.strip()
        if fenced or indented:
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1].rstrip() + " " + lines[i].strip()
            for part in line.strip().removeprefix("$ ").split("&&"):
                if re.match(r"(\S*/)?ladder\s", part.strip()):
                    out.append((start, part.strip()))
        i += 1
    return out


COMMANDS = [(f"{path.relative_to(ROOT)}:{n}", cmd) for path in DOCS for n, cmd in command_lines(path.read_text())]


def test_the_docs_have_commands():
    assert len(COMMANDS) >= 25  # README, cloud-tpu, planning, training, tpu-compile, specialization


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_runs_as_written(where, command, tmp_path, monkeypatch, capsys):
    argv = shlex.split(command, comments=True)[1:]
    verb, rest = argv[0], argv[1:]
    assert verb in cli.VERBS, f"{where}: unknown verb in {command!r}"
    try:
        module, args = cli.parse(verb, rest)
    except SystemExit:
        pytest.fail(f"{where}: {command!r} does not parse:\n{capsys.readouterr().err}")
    config = getattr(args, "config", None)
    if config and config.split(":")[0].startswith("configs/"):
        monkeypatch.chdir(ROOT)
        load_config(config, args.config_overrides)  # the file exists and every override names a real key
    if verb == "plan":
        if args.out:
            rest = [str(tmp_path / "plan.json") if a == args.out else a for a in rest]
        assert cli.main(["plan", *rest]) == 0, f"{where}: {command!r}: {capsys.readouterr().err}"
    if verb == "run" and not args.dry_run:  # plans and prints every launch command, trains nothing
        rest = [a for i, a in enumerate(rest) if a not in ("-o", "--out") and rest[i - 1:i] not in (["-o"], ["--out"])]
        assert cli.main(["run", *rest, "--dry-run", "-o", str(tmp_path / "run")]) == 0, capsys.readouterr().err


def test_a_broken_doc_command_is_caught(capsys):
    """The check above can fail: the command the issue found in docs/cloud-tpu.md (no targets, no -o)."""
    with pytest.raises(SystemExit):
        cli.parse("predict", ["results.csv"])
    assert "required" in capsys.readouterr().err


def test_command_lines_reads_fenced_indented_and_continued_lines():
    text = ("text `ladder inline` is prose\n\n    ladder plan --preset smoke\n\n```bash\n# comment\n"
            "$ ladder launch p.json \\\n    --dry-run\npip install x && ladder status p.json\n```\n")
    assert command_lines(text) == [(3, "ladder plan --preset smoke"), (7, "ladder launch p.json --dry-run"),
                                   (9, "ladder status p.json")]
