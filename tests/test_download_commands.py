"""The `hf` commands that the README, lesson 00 and the pickled-weights error tell a learner to type are parsed by
the installed huggingface_hub CLI (parsing only, nothing is downloaded): a spelling from memory that the CLI reads
differently (`--include a b` takes b as a file name) fails here instead of on a learner's machine."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

click = pytest.importorskip("click")
hf_cli = pytest.importorskip("huggingface_hub.cli.hf")

import mistral_edu.checkpoints.find as find

ROOT = Path(__file__).resolve().parents[1]
WANTED = {"*.safetensors", "*.json", "tokenizer.model"}


def commands(text: str) -> list[str]:
    """Every command line starting with `hf ` in text, backslash continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [m.strip().strip("`") for m in re.findall(r"`?(hf (?:auth|download)\b[^`\n]*)", joined)]


def parse(line: str) -> tuple[list[str], dict]:
    """The sub-command path and the parameters the installed CLI would run `line` with."""
    args = shlex.split(line)[1:]
    command, path = hf_cli.app, ["hf"]
    context = click.Context(command, info_name="hf")
    while isinstance(command, click.Group):
        name, command, args = command.resolve_command(context, args)   # the group's own look-up, lazy loading included
        path.append(name)
        context = click.Context(command, info_name=name, parent=context)
    return path, command.make_context(path[-1], args, parent=context.parent).params


def documented_commands() -> list[tuple[str, str]]:
    sources = {"README.md": (ROOT / "README.md").read_text(),
               "00_start_here.md": (ROOT / "notebooks/src/00_start_here.md").read_text(),
               "find.py": Path(find.__file__).read_text().replace('"\n            "', "")}
    return [(where, line) for where, text in sources.items() for line in commands(text)]


def test_every_place_names_a_download_command():
    places = {where for where, line in documented_commands() if line.startswith("hf download")}
    assert places == {"README.md", "00_start_here.md", "find.py"}


@pytest.mark.parametrize("where, line", documented_commands())
def test_command_parses_as_meant(where, line):
    path, params = parse(line)
    if path[1] == "download":
        assert not params["filenames"], f"{where}: `{line}` passes {params['filenames']} as file names, not patterns"
        assert set(params["include"]) == WANTED, f"{where}: `{line}` includes {params['include']}"
        assert params["repo_id"] == "mistralai/Mistral-7B-Instruct-v0.2"
    else:
        assert path == ["hf", "auth", "login"]


def test_the_old_spelling_is_caught():
    _, params = parse('hf download r --include "*.safetensors" "*.json" --local-dir x')
    assert params["filenames"] == ("*.json",)
