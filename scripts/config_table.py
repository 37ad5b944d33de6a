"""Print the option table of docs/configuration.md from Config's fields (run after a change)."""

from __future__ import annotations

from dataclasses import fields

from caboose.config import Config


def main() -> None:
    defaults = Config()
    print("| flag | default | meaning |")
    print("| --- | --- | --- |")
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            flag = f"{flag} / --no-{f.name.replace('_', '-')}"
        print(f"| `{flag}` | `{getattr(defaults, f.name)!r}` | {f.metadata['help']} |")


if __name__ == "__main__":
    main()
