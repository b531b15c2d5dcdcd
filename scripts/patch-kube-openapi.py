#!/usr/bin/env python3
"""Backport kube-openapi's fix for empty values in custom resources (kube-openapi PR 230).

Built with Go >= 1.16, the 1.20 API server's validator takes every zero value ("", 0,
false) for null: `reflect.DeepEqual(reflect.Zero(T), reflect.ValueOf(v))` started to
compare the values themselves, so a custom resource with `queue: ""` is rejected with
`must be of type string: "null"`. Real 1.20 clusters (built with Go 1.15) accept it;
the fix checks for nil only, as upstream does.

Usage: patch-kube-openapi.py VENDOR_DIR   (.../vendor/k8s.io/kube-openapi)

Idempotent; exits non-zero if the expected text is not found.
"""

from __future__ import annotations

import sys
from pathlib import Path

MARK = "// botenv: kube-openapi#230 backport (zero values are not null)"
OLD = (
    "\tif data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), "
    "reflect.ValueOf(data)) {\n"
)
NEW = f"\t{MARK}\n\tif data == nil {{\n"


def main(vendor: Path) -> int:
    path = vendor / "pkg" / "validation" / "validate" / "type.go"
    text = path.read_text()
    if MARK in text:
        print(f"patch-kube-openapi: {path} already patched")
        return 0
    if text.count(OLD) != 1:
        print(f"patch-kube-openapi: expected text not found once in {path}", file=sys.stderr)
        return 1
    text = text.replace(OLD, NEW)
    # `reflect` may now be unused in this file; Go refuses unused imports.
    if "reflect." not in text.replace(MARK, ""):
        text = text.replace('\t"reflect"\n', "", 1)
    path.write_text(text)
    print(f"patch-kube-openapi: patched {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1])))
