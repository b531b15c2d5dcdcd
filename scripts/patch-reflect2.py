#!/usr/bin/env python3
"""Backport modern-go/reflect2 v1.0.2's mapiterinit fix into a vendored v1.0.1.

reflect2 v1.0.1 links reflect.mapiterinit with the pre-Go-1.18 signature (it
returned a *hiter). Go 1.18 changed it to fill a caller-allocated hiter, so an
old copy makes kube-apiserver 1.20 crash with SIGSEGV in json-iterator.

Usage: patch-reflect2.py VENDOR_DIR   (…/vendor/github.com/modern-go/reflect2)

Idempotent; exits non-zero if the expected text is not found.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARK = "botenv: reflect2 v1.0.2 mapiterinit backport"

OLD_DECL = re.compile(r"func mapiterinit\(rtype unsafe\.Pointer, m unsafe\.Pointer\) \*hiter\n")
NEW_DECL = f"// {MARK}\nfunc mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)\n"

# The v1.0.1 hiter only names key and value; the runtime writes the full struct.
OLD_HITER = re.compile(r"type hiter struct \{\n(?:[^}]*\n)?\}\n")
NEW_HITER = """type hiter struct {
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    *[]unsafe.Pointer
	oldoverflow *[]unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}
"""

OLD_ITERATE = re.compile(
    r"(func \(type2 \*UnsafeMapType\) UnsafeIterate\(obj unsafe\.Pointer\) MapIterator \{\n)"
    r"(\s*)return &UnsafeMapIterator\{\n"
    r"\s*hiter:\s*mapiterinit\(type2\.rtype, \*\(\*unsafe\.Pointer\)\(obj\)\),\n"
)


def new_iterate(m: re.Match[str]) -> str:
    indent = m.group(2)
    return (
        f"{m.group(1)}{indent}// {MARK}\n"
        f"{indent}var it hiter\n"
        f"{indent}mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), &it)\n"
        f"{indent}return &UnsafeMapIterator{{\n"
        f"{indent}\thiter:      &it,\n"
    )


def patch(path: Path, edits: list[tuple[re.Pattern[str], object]]) -> None:
    text = path.read_text()
    if MARK in text:
        print(f"patch-reflect2: {path.name} already patched")
        return
    for pattern, repl in edits:
        text, count = pattern.subn(repl, text, count=1)  # type: ignore[call-overload]
        if count != 1:
            sys.exit(
                f"patch-reflect2: expected text not found in {path}: {pattern.pattern!r}"
                " (is this reflect2 v1.0.1?)"
            )
    path.write_text(text)
    print(f"patch-reflect2: patched {path.name}")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit(__doc__)
    root = Path(argv[1])
    link, umap = root / "unsafe_link.go", root / "unsafe_map.go"
    for f in (link, umap):
        if not f.is_file():
            sys.exit(f"patch-reflect2: missing {f}")
    patch(link, [(OLD_DECL, NEW_DECL), (OLD_HITER, NEW_HITER)])
    patch(umap, [(OLD_ITERATE, new_iterate)])


if __name__ == "__main__":
    main(sys.argv)
