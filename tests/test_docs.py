"""README.md and docs/*.md stay true: every command parses with the real parser, every path and
link exists, every Python block compiles and its imports, calls and keywords resolve.

Nothing is run: `spd` lines are parsed with `services.cli.build_parser()`, benchmark commands with
the script's own argparse parser (each script is run once with its parser's `parse_args`
intercepted, in one subprocess), Python blocks are compiled and their names looked up.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import io
import json
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# backticked text starting with one of these is a path in this repository
REPO_PREFIXES = (
    "spd_core/",
    "services/",
    "docs/",
    "benchmarks/",
    "deploy/",
    "protos/",
    "tests/",
    "client/",
    ".ci/",
)
PACKAGES = ("spd_core", "spd_client", "services")  # ours: dotted names and imports must resolve
SHELL_LANGS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str


@dataclass(frozen=True)
class Item:
    """One thing to check, with where it is written."""

    doc: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def blocks_and_prose(path: Path) -> tuple[list[Block], list[tuple[int, str]]]:
    """Fenced code blocks (indentation removed) and the remaining lines with their numbers."""
    blocks, prose = [], []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        start, lang, body = i + 1, opening.group(2).lower(), []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{_rel(path)}:{start}: code block never closed"
        blocks.append(Block(_rel(path), start, lang, textwrap.dedent("\n".join(body))))
        i += 1  # the closing fence
    return blocks, prose


BLOCKS: list[Block] = []
PROSE: list[tuple[str, int, str]] = []
for _doc in DOCS:
    _blocks, _prose = blocks_and_prose(_doc)
    BLOCKS += _blocks
    PROSE += [(_rel(_doc), n, line) for n, line in _prose]


def shell_commands(block: Block) -> list[Item]:
    """Simple commands of a shell block: continuations joined, comments dropped, split at
    `&&`, `||`, `|` and `;`, leading VAR=value assignments removed (argv joined by spaces)."""
    items = []
    logical: list[tuple[int, str]] = []
    pending, first = "", 0
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            first = block.line + 1 + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append((first, pending + line))
        pending = ""
    for line_no, line in logical:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token in (";", "&&", "||", "|", "&"):
                while command and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]):
                    command.pop(0)
                if command:
                    items.append(Item(block.doc, line_no, shlex.join(command)))
                command = []
            else:
                command.append(token)
    return items


SHELL = [cmd for b in BLOCKS if b.lang in SHELL_LANGS for cmd in shell_commands(b)]
PYTHON = [b for b in BLOCKS if b.lang in ("python", "py")]
INLINE = [
    Item(doc, n, span)
    for doc, n, line in PROSE
    for span in re.findall(r"`([^`\n]+)`", re.sub(r"``+", "", line))
]


def _id(item: Item | Block) -> str:
    return f"{item.doc}:{item.line}"


# ----------------------------------------------------------------------------- spd commands


@pytest.fixture(scope="module")
def spd_parser() -> argparse.ArgumentParser:
    from services.cli import build_parser

    return _exact(build_parser())


def _exact(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` and its subcommands refusing abbreviated options: a doc writes them in full."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _exact(sub)
    return parser


def _spd_argv(argv: list[str]) -> list[str] | None:
    """The arguments after `spd` in a command (also `ray job submit ... -- spd ...`)."""
    if argv and argv[0] == "spd":
        return argv[1:]
    for i in range(1, len(argv)):
        if argv[i] == "spd" and argv[i - 1] == "--":
            return argv[i + 1 :]
    return None


SPD_COMMANDS = [c for c in SHELL if _spd_argv(shlex.split(c.text)) is not None]


def test_the_docs_show_spd_commands():
    assert len(SPD_COMMANDS) > 30, "the extraction of spd commands from the docs broke"


@pytest.mark.parametrize("cmd", SPD_COMMANDS, ids=_id)
def test_spd_command_parses(cmd: Item, spd_parser: argparse.ArgumentParser):
    argv = _spd_argv(shlex.split(cmd.text))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = spd_parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{cmd}\n  does not parse: {err.getvalue().strip()}")
    if args.command == "decompose":
        from spd_core.presets import preset_names

        assert args.config in preset_names() or args.config.endswith((".yaml", ".yml")), (
            f"{cmd}\n  '{args.config}' is neither a preset ({', '.join(preset_names())}) nor a "
            ".yaml config"
        )


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every option string of `parser` and of the subcommands below it."""
    found = {}
    for action in parser._actions:
        for option in action.option_strings:
            found[option] = action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.update(_options(sub))
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _summary_commands() -> list[Item]:
    """`spd ...` lines of text blocks (the command summary; indented lines continue the line
    above, ` | spd ` separates two commands) and inline `spd ...` spans of the prose. They are
    written with placeholders, so they are checked for their subcommand, options and choices
    rather than parsed."""
    found = []
    for block in BLOCKS:
        if block.lang in SHELL_LANGS or block.lang in ("python", "py"):
            continue
        lines = block.text.splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("spd "):
                first, text = i, lines[i]
                while (
                    i + 1 < len(lines) and lines[i + 1][:1] in (" ", "\t") and lines[i + 1].strip()
                ):
                    i += 1
                    text += " " + lines[i].strip()
                for part in text.split(" | spd "):
                    part = part if part.startswith("spd ") else "spd " + part
                    found.append(Item(block.doc, block.line + 1 + first, part))
            i += 1
    return found + [i for i in INLINE if i.text.startswith("spd ")]


SUMMARY = _summary_commands()


def test_the_readme_has_a_command_summary():
    readme = [i for i in SUMMARY if i.doc == "README.md" and i.text.startswith("spd query")]
    assert readme, "the README's command summary (a text block of spd lines) is gone"


@pytest.mark.parametrize("cmd", SUMMARY, ids=_id)
def test_spd_summary_names_real_subcommands_options_and_choices(
    cmd: Item, spd_parser: argparse.ArgumentParser
):
    words = cmd.text.split()
    subcommands = _subcommands(spd_parser)
    assert len(words) > 1 and words[1] in subcommands, (
        f"{cmd}\n  '{words[1] if len(words) > 1 else ''}' is not an spd subcommand "
        f"({', '.join(subcommands)})"
    )
    options = _options(subcommands[words[1]])
    for option in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", cmd.text):
        assert option in options, (
            f"{cmd}\n  spd {words[1]} has no option {option} (it has {', '.join(sorted(options))})"
        )
    for option, alternatives in re.findall(r"(--[\w-]+)[ =]([\w.-]+(?:\|[\w.-]+)+)", cmd.text):
        choices = options[option].choices
        if choices is not None:
            for value in alternatives.split("|"):
                assert value in choices, (
                    f"{cmd}\n  {option} does not accept '{value}' (choices: {', '.join(choices)})"
                )


# ----------------------------------------------------------------------------- benchmarks

BENCH_COMMANDS = [
    c
    for c in SHELL + [i for i in INLINE if i.text.startswith("python benchmarks/")]
    if re.match(r"(python3?|bash|sh) benchmarks/", c.text)
]

# Runs each script as __main__ with parse_args intercepted, then parses every documented
# command line with the parser the script built. One process, so torch is imported once.
_PARSE_SCRIPTS = r"""
import argparse, contextlib, io, json, runpy, sys
todo = json.load(sys.stdin)
sys.path.insert(0, "benchmarks")
class Captured(Exception):
    pass
def capture(self, args=None, namespace=None):
    raise Captured(self)
argparse.ArgumentParser.parse_args = capture
out = {}
for script, commands in todo.items():
    sys.argv = [script]
    try:
        runpy.run_path(script, run_name="__main__")
        out[script] = {"error": "the script never called parse_args", "failures": []}
        continue
    except Captured as got:
        parser = got.args[0]
        parser.allow_abbrev = False  # a doc writes options in full
    except BaseException as err:
        out[script] = {"error": f"{type(err).__name__}: {err}", "failures": []}
        continue
    failures = []
    for argv in commands:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                _, extra = parser.parse_known_args(argv)  # what the real parse_args does
                if extra:
                    parser.error("unrecognized arguments: " + " ".join(extra))
        except SystemExit:
            failures.append([argv, err.getvalue().strip()])
    out[script] = {"error": None, "failures": failures}
print(json.dumps(out))
"""


def _bench_argv(cmd: Item) -> tuple[str, list[str]]:
    argv = [t.strip("[]") for t in shlex.split(cmd.text)[1:]]
    return argv[0], [a for a in argv[1:] if a]


@pytest.fixture(scope="module")
def bench_parses() -> dict:
    todo: dict[str, list[list[str]]] = {}
    for cmd in BENCH_COMMANDS:
        script, argv = _bench_argv(cmd)
        if script.endswith(".py") and (ROOT / script).is_file():
            todo.setdefault(script, []).append(argv)
    done = subprocess.run(
        [sys.executable, "-c", _PARSE_SCRIPTS],
        input=json.dumps(todo),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, f"parsing the benchmark commands failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_docs_show_benchmark_commands():
    assert len({_bench_argv(c)[0] for c in BENCH_COMMANDS}) >= 6


@pytest.mark.parametrize("cmd", BENCH_COMMANDS, ids=_id)
def test_benchmark_command_names_a_script_and_its_options(cmd: Item, bench_parses: dict):
    script, argv = _bench_argv(cmd)
    assert (ROOT / script).is_file(), f"{cmd}\n  {script} does not exist"
    if not script.endswith(".py"):
        return
    result = bench_parses[script]
    assert result["error"] is None, f"{cmd}\n  {script} did not build its parser: {result['error']}"
    for failed, message in result["failures"]:
        assert failed != argv, f"{cmd}\n  does not parse with {script}'s parser: {message}"


@pytest.mark.parametrize(
    "cmd", [c for c in SHELL + INLINE if re.match(r"python3? -m ", c.text)], ids=_id
)
def test_python_m_names_a_module(cmd: Item):
    module = shlex.split(cmd.text)[2]
    assert importlib.util.find_spec(module) is not None, f"{cmd}\n  no module {module}"


# ----------------------------------------------------------------------------- the JSON API

CURL = [c for c in SHELL if c.text.startswith("curl ")]


def test_the_json_api_has_curl_examples():
    assert any("/api/v1/" in c.text for c in CURL), "docs show no curl call of the JSON API"


@pytest.mark.parametrize("cmd", [c for c in CURL if "/api/v1/" in c.text], ids=_id)
def test_curl_examples_name_real_rpcs_and_send_their_request_messages(cmd: Item):
    from google.protobuf import json_format

    from services.explorer.rpc import METHODS, request_type

    words = shlex.split(cmd.text)
    (url,) = [w for w in words if "/api/v1/" in w]
    method = url.rsplit("/api/v1/", 1)[1].split("?")[0]
    assert method in METHODS, f"{cmd}\n  no RPC {method!r} (there are: {', '.join(METHODS)})"
    bodies = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-d", "--data")]
    for body in bodies:
        json_format.Parse(body, request_type(method)())  # raises naming the field that is wrong


# ----------------------------------------------------------------------------- paths and links


def _repo_paths() -> list[Item]:
    found = [i for i in INLINE if i.text.startswith(REPO_PREFIXES)]
    for cmd in SHELL:
        for token in shlex.split(cmd.text):
            token = token.removeprefix("./")
            if token.startswith(REPO_PREFIXES) or token in ("client", "client/"):
                found.append(Item(cmd.doc, cmd.line, token))
    return found


@pytest.mark.parametrize("ref", _repo_paths(), ids=_id)
def test_repository_path_exists(ref: Item):
    path = ref.text.split()[0].rstrip(".,:;)")
    assert list(ROOT.glob(path)) or (ROOT / path).exists(), f"{ref}\n  {path} does not exist"


LINKS = [
    Item(doc, n, target)
    for doc, n, line in PROSE
    for target in re.findall(r"\]\(([^)\s]+)\)", line)
    if not re.match(r"[a-z]+:|#", target)
]


def test_the_docs_link_to_each_other():
    assert any(link.doc == "README.md" for link in LINKS)


@pytest.mark.parametrize("link", LINKS, ids=_id)
def test_relative_link_resolves(link: Item):
    target = (ROOT / link.doc).parent / link.text.split("#")[0]
    assert target.exists(), f"{link}\n  {target.relative_to(ROOT)} does not exist"


def _resolve(dotted: str) -> object:
    """The object a dotted name (`pkg.module.attr`, or `pkg.module:attr`) names; raises if none."""
    parts = dotted.replace(":", ".").split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as err:
            if err.name and not ".".join(parts[:cut]).startswith(err.name):
                raise  # the module exists but one of its own imports is missing
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


DOTTED = [
    Item(i.doc, i.line, m.group(0))
    for i in INLINE
    if (m := re.match(rf"(?:{'|'.join(PACKAGES)})(?:[.:]\w+)+", i.text))
]


@pytest.mark.parametrize("ref", DOTTED, ids=_id)
def test_dotted_name_resolves(ref: Item):
    try:
        _resolve(ref.text)
    except (ImportError, AttributeError) as err:
        pytest.fail(f"{ref}\n  does not resolve: {err}")


# ----------------------------------------------------------------------------- code blocks


@pytest.mark.parametrize("block", PYTHON, ids=_id)
def test_python_block_compiles_and_its_names_resolve(block: Block):
    tree = compile(block.text, f"{block.doc}:{block.line}", "exec", ast.PyCF_ONLY_AST)
    compile(tree, f"{block.doc}:{block.line}", "exec")
    imported: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in PACKAGES:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), (
                    f"{block.doc}:{block.line}: {node.module} has no {alias.name}"
                )
                imported[alias.asname or alias.name] = getattr(module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    importlib.import_module(alias.name)
    # calls of imported functions and of methods of an imported client: names and keywords exist
    client_cls = imported.get("Client") or imported.get("AsyncClient")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn, what = None, ast.unparse(node.func)
        if isinstance(node.func, ast.Name) and node.func.id in imported:
            fn = imported[node.func.id]
        elif (
            client_cls is not None
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "client"
        ):
            assert hasattr(client_cls, node.func.attr), (
                f"{block.doc}:{block.line}: {client_cls.__name__} has no method {node.func.attr}"
            )
            fn = getattr(client_cls, node.func.attr)
        if fn is None or not callable(fn):
            continue
        params = inspect.signature(fn).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue
        for kw in node.keywords:
            assert kw.arg is None or kw.arg in params, (
                f"{block.doc}:{block.line}: {what}() has no parameter {kw.arg} "
                f"(it takes {', '.join(params)})"
            )


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "json"], ids=_id)
def test_json_block_parses(block: Block):
    json.loads(block.text)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in ("yaml", "yml")], ids=_id)
def test_yaml_block_parses(block: Block):
    assert isinstance(yaml.safe_load(block.text), dict)


def test_readme_stays_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move detail into docs/"
