"""The README documents every setting and every command the CLI has."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stream_rec.cli import _parser
from stream_rec.config import Settings, env_name, settings_markdown

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_settings_table_is_the_one_the_code_prints() -> None:
    assert settings_markdown() in README, "run `stream-rec settings --markdown` into the README"


def test_every_setting_is_in_the_readme() -> None:
    missing = []
    for group, field in Settings.model_fields.items():
        annotation = field.annotation
        names = getattr(annotation, "model_fields", None)
        if names is None and dataclasses.is_dataclass(annotation):
            names = {f.name: f for f in dataclasses.fields(annotation)}
        variables = [env_name((group,))] if not names else [env_name((group, n)) for n in names]
        missing += [v for v in variables if f"`{v}`" not in README]
    assert not missing, f"README lacks {missing}"


def test_every_command_is_in_the_readme() -> None:
    parser = _parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in commands:
        assert f"stream-rec {name}" in README, name
