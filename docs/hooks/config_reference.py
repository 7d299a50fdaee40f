"""mkdocs hook: pages generated from the code at build time, so they cannot drift from it.

- `reference/configuration.md`: every section and field of the pydantic training config
  (`wavlmrawnet.training.config.TrainConfig`), with its type, default and description.
- `reference/cli.md`: the `--help` of `wavlmrawnet` and of each command, from the argparse parsers.

Nothing is written into docs/: the pages are added to the build as generated files (mkdocs >= 1.6).
"""

from __future__ import annotations

import inspect
import io
import re
import types
import typing
from contextlib import redirect_stdout

from mkdocs.structure.files import File


# ----------------------------------------------------------------------------------------------- configuration
def _bounds(metadata) -> str:
    """` (> 0, < 1)` from annotated-types constraints (`Gt`, `Ge`, `Lt`, `Le`, or a `Field` holding them)."""
    bounds = []
    for item in metadata:
        for op, attribute in ((">", "gt"), (">=", "ge"), ("<", "lt"), ("<=", "le")):
            value = getattr(item, attribute, None)
            if value is None:
                for constraint in getattr(item, "metadata", []):
                    value = getattr(constraint, attribute, value)
            if value is not None:
                bounds.append(f"{op} {value}")
    return f" ({', '.join(bounds)})" if bounds else ""


def _type_name(annotation) -> str:
    """A readable type: `int (> 0)`, `str | None`, `list[str]`, `one of "auto", "fp32"`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        return _type_name(base) + _bounds(metadata)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        value = field.default_factory()
        return "(the section's defaults)" if hasattr(value, "model_fields") else f"`{value!r}`"
    if field.default is PydanticUndefined:
        return "**required**"
    return f"`{field.default!r}`"


def _attribute_docs(model) -> dict[str, str]:
    """`name: text` lines of a Google-style `Attributes:` section in the class docstring (for models without
    `Field(description=...)`, such as `AugmentConfig`)."""
    doc = inspect.getdoc(model) or ""
    if "Attributes:" not in doc:
        return {}
    found, name = {}, None
    for line in doc.split("Attributes:", 1)[1].splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            name = match.group(1)
            found[name] = match.group(2).strip()
        elif name and line.startswith("        "):
            found[name] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    return found


def _section_model(annotation):
    """The pydantic model a field holds (directly or as `X | None`), else None."""
    candidates = typing.get_args(annotation) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
            return candidate
    return None


def render_config_reference() -> str:
    """The configuration reference page, in Markdown."""
    from wavlmrawnet.training.config import TrainConfig

    lines = [
        "# Training configuration",
        "",
        "Every key of a training YAML file (`wavlmrawnet train --config FILE`), generated from "
        "`wavlmrawnet.training.config` when the site is built. Any key can be overridden on the command line with "
        "`--set section.key=value`; an unknown key, a wrong type or a value out of range stops the run before any "
        "data is read. See [Training](../training.md) for how the sources, augmentation and checkpoints work, and "
        "`configs/` for complete files.",
        "",
    ]
    queue = [(name, field) for name, field in TrainConfig.model_fields.items()]
    while queue:
        prefix, field = queue.pop(0)
        model = _section_model(field.annotation)
        lines += [f"## `{prefix}`", ""]
        doc = inspect.getdoc(model) or ""
        summary = doc.split("\n\n")[0].replace("\n", " ") if doc else ""
        if summary and not summary.startswith("Attributes:"):
            lines += [summary, ""]
        lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        attribute_docs = _attribute_docs(model)
        for name, sub in model.model_fields.items():
            description = sub.description or attribute_docs.get(name, "")
            kind = (_type_name(sub.annotation) + _bounds(sub.metadata)).replace("|", "\\|")
            if _section_model(sub.annotation) is not None:
                queue.append((f"{prefix}.{name}", sub))
                description += f" See [`{prefix}.{name}`](#{prefix}{name})."
            lines.append(f"| `{name}` | {kind} | {_default(sub)} | {description.replace('|', chr(92) + '|')} |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- command line
def _help(parser) -> str:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        parser.print_help()
    return buffer.getvalue()


def render_cli_reference() -> str:
    """Each command's `--help`, in Markdown."""
    import argparse

    from wavlmrawnet.cli import build_parser
    from wavlmrawnet.train import build_parser as build_train_parser

    parser = build_parser()
    lines = [
        "# Command line",
        "",
        "The `--help` of every command, generated from the parsers when the site is built. "
        "[Inference](../inference.md#command-line) explains the runtime options.",
        "",
        "```text",
        _help(parser).rstrip(),
        "```",
        "",
    ]
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        sub = build_train_parser() if name == "train" else sub
        lines += [f"## `wavlmrawnet {name}`", "", "```text", _help(sub).rstrip(), "```", ""]
    return "\n".join(lines)


GENERATED = {"reference/configuration.md": render_config_reference, "reference/cli.md": render_cli_reference}


def on_files(files, config):
    for path, render in GENERATED.items():
        files.append(File.generated(config, path, content=render()))
    return files
