"""The command-line framework every entry point shares (`fer-edge`, `python -m fer_edge.edge`,
`python -m fer_edge.benchmarks`): one-line errors, hyphenated flags with hidden underscore aliases,
defaults shown in --help, and flags generated from config dataclasses.

Standard library only: it is imported on a device that has just the runtime.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import logging
import sys
import textwrap
import tokenize
import typing

from fer_edge.edge.errors import FerEdgeError


def hyphenated(option: str) -> str:
    """'--max_frames' -> '--max-frames'; short options and positionals are left alone."""
    return "--" + option[2:].replace("_", "-") if option.startswith("--") else option


def underscored(option: str) -> str:
    """'--max-frames' -> '--max_frames', the spelling these flags had before."""
    return "--" + option[2:].replace("-", "_") if option.startswith("--") else option


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default (or says it is required)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "%(default)" in text or "(default" in text.lower():
            return text
        if action.required:
            return f"{text} (required)"
        if action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, argparse._StoreConstAction) and isinstance(action.const, bool):
            return f"{text} (default: {'on' if action.default else 'off'})"
        if action.default is None:
            return f"{text} (default: not set)"
        if action.default == "":
            return f"{text} (default: '')"
        if isinstance(action.default, tuple):
            return f"{text} (default: {','.join(map(str, action.default))})"
        return f"{text} (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """argparse with the house rules: a bad option is one line (no usage dump) and exit 2;
    flags are spelt with hyphens, and the old underscore spelling of each still works but is
    hidden from --help; --help shows every default."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = HelpFormatter
        # Abbreviations would make '--max' ambiguous between a flag and its hidden alias.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def add_argument(self, *names: str, **kwargs) -> argparse.Action:
        if kwargs.get("help") is argparse.SUPPRESS:
            return super().add_argument(*names, **kwargs)
        action = super().add_argument(*(hyphenated(n) for n in names), **kwargs)
        # From the names given, not action.option_strings: --no-X of a BooleanOptionalAction
        # is derived again from each alias.
        aliases = [underscored(n) for n in names if underscored(n) != hyphenated(n)]
        if aliases:
            hidden = dict(kwargs, dest=action.dest, help=argparse.SUPPRESS)
            hidden.update(default=argparse.SUPPRESS, required=False)
            super().add_argument(*aliases, **hidden)
        return action


def _at_least(kind, low, strict: bool = False):
    """An argparse type: `kind(text)`, at least `low` (more than `low` when strict)."""

    def parse(text: str):
        value = kind(text)
        if value < low or (strict and value == low):
            bound = "more than" if strict else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {low}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _at_least(int, 1)
non_negative_int = _at_least(int, 0)
positive_float = _at_least(float, 0, strict=True)
non_negative_float = _at_least(float, 0)


def sync_seconds(text: str) -> float | None:
    """--events-sync: seconds (0 = every write) or "off" (None: never fdatasync)."""
    if text.strip().lower() == "off":
        return None
    try:
        return non_negative_float(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"give seconds (0 = every frame) or off, got {text}"
        ) from None


def command_parser(prog: str, description: str) -> tuple[OneLineParser, object]:
    """The top-level parser every entry point shares, and its subcommand registry."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much the program logs to stderr",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    return parser, sub


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, run the chosen subcommand, and turn a FerEdgeError into one line and its exit
    code (2 unless the error class says otherwise)."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except FerEdgeError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def field_comments(cls: type) -> dict[str, str]:
    """The comments of a dataclass's fields, read from its source: the `# ...` block just
    above a field and the comment after it on the same line, joined."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (a frozen app): fields get no comment
        return {}
    lines = source.splitlines()
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    out = {}
    body = ast.parse(source).body[0].body
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, row = [], node.lineno - 1
        while row >= 1 and lines[row - 1].lstrip().startswith("#"):
            above.insert(0, comments.get(row, ""))
            row -= 1
        after = [comments[r] for r in range(node.lineno, node.end_lineno + 1) if r in comments]
        text = " ".join(t for t in above + after if t)
        out[node.target.id] = text
    return out


def _tuple_parser(kind: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(t) for t in text.replace(" ", "").split(",") if t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list, got {text!r}") from None

    parse.__name__ = f"comma list of {kind.__name__}"
    return parse


def _field_default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One --flag per field of a config dataclass (nested dataclasses flattened), its default
    the field's default and its help the field's comment."""
    hints = typing.get_type_hints(cls)
    helps = field_comments(cls)
    for f in dataclasses.fields(cls):
        default = _field_default(f)
        if dataclasses.is_dataclass(default):
            add_dataclass_flags(parser, type(default), prefix=f"{f.name}.")
            continue
        flag, dest = f"--{f.name}", f"{prefix}{f.name}"
        # argparse %-formats help text, and comments say things like "95.8%"
        text = (helps.get(f.name) or f.name.replace("_", " ")).replace("%", "%%")
        if isinstance(default, bool):
            action = argparse.BooleanOptionalAction
            parser.add_argument(flag, dest=dest, default=default, action=action, help=text)
        elif isinstance(default, tuple):
            args = typing.get_args(hints[f.name])
            kind = args[0] if args and isinstance(args[0], type) else str
            parser.add_argument(
                flag,
                dest=dest,
                default=default,
                type=_tuple_parser(kind),
                metavar="A,B,...",
                help=text,
            )
        else:
            kind = type(default)
            metavar = f.name.upper()
            parser.add_argument(
                flag, dest=dest, default=default, type=kind, metavar=metavar, help=text
            )


def build_dataclass(cls: type, args: argparse.Namespace, prefix: str = ""):
    """The dataclass filled from the flags `add_dataclass_flags` made."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        default = _field_default(f)
        if dataclasses.is_dataclass(default):
            kwargs[f.name] = build_dataclass(type(default), args, prefix=f"{f.name}.")
        else:
            kwargs[f.name] = getattr(args, f"{prefix}{f.name}")
    return cls(**kwargs)
