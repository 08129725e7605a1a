"""Write the AsyncAPI 3.0 document of the network's events (``make asyncapi``), or with ``--check``
fail when the committed one is not what the topic table and the protos give (``make
asyncapi-check``, part of ``make test``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from ach_events.asyncapi import document

HEADER = "# Generated from the topic table and the protos by `make asyncapi`: do not edit.\n"


class _Plain(yaml.SafeDumper):
    """No anchors and aliases: each schema written out where it is used, as readers expect."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def render() -> str:
    return HEADER + yaml.dump(document(), Dumper=_Plain, sort_keys=False, allow_unicode=True, width=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if not args.check:
        args.path.write_text(text, encoding="utf-8")
        return
    if not args.path.exists() or args.path.read_text(encoding="utf-8") != text:
        print(f"{args.path} is stale: run 'make asyncapi' and commit", file=sys.stderr)
        raise SystemExit(1)
    print(f"{args.path} is up to date")


if __name__ == "__main__":
    main()
