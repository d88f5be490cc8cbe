#!/usr/bin/env python3
"""Tests of scripts/check-house.py: small module trees it must find breaches in (and
some it must pass), each a way a real breach once slipped past it. Run by CI."""

import os
import subprocess
import sys
import tempfile
import textwrap

CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check-house.py")
BODY = "\n".join(f"    let _v{i} = {i};" for i in range(70))
LIB, AMOD = "pub mod a;\n", "mod x;\nmod y;\nmod z;\n"


def long(head, close="}"):
    return head + "\n" + BODY + "\n" + close + "\n"


def tree(**files):
    return {p.replace("__", "/").replace("_rs", ".rs"): t for p, t in files.items()}


# name -> (files, a text the output must contain, or None when it must pass)
CASES = {
    "a plain cycle": (tree(lib_rs=LIB, a__mod_rs=AMOD, a__x_rs="use super::y::Y;\n", a__y_rs="use super::x::X;\n", a__z_rs=""), "import cycle between a::x, a::y"),
    "a cycle of three": (tree(lib_rs=LIB, a__mod_rs=AMOD, a__x_rs="use super::y::Y;\n", a__y_rs="use super::z::Z;\n", a__z_rs="use super::x::X;\n"), "import cycle between a::x, a::y, a::z"),
    "nested use groups": (tree(lib_rs=LIB, a__mod_rs=AMOD, a__x_rs="use crate::{a::{y, z}};\n", a__y_rs="use super::x::X;\n", a__z_rs=""), "import cycle between a::x, a::y"),
    "a glob of the parent": (tree(lib_rs=LIB, a__mod_rs=AMOD, a__x_rs="use super::*;\npub fn f() { y::g() }\n", a__y_rs="pub fn g() { super::x::f() }\n", a__z_rs=""), "import cycle between a::x, a::y"),
    "a re-export of the parent": (tree(lib_rs=LIB, a__mod_rs=AMOD + "pub use self::y::Y;\n", a__x_rs="use super::Y;\n", a__y_rs="pub struct Y(Box<super::x::X>);\n", a__z_rs=""), "import cycle between a::x, a::y"),
    "a path in a serde attribute": (tree(lib_rs=LIB, a__mod_rs=AMOD, a__x_rs='#[serde(default = "crate::a::y::port")]\npub struct X;\n', a__y_rs="pub fn port() { let _ = super::x::X; }\n", a__z_rs=""), "import cycle between a::x, a::y"),
    "a path over two lines": (tree(lib_rs=LIB, a__mod_rs=AMOD, a__x_rs="pub fn f() { crate::a\n    ::y::g() }\n", a__y_rs="pub fn g() { super::x::f() }\n", a__z_rs=""), "import cycle between a::x, a::y"),
    "an alias of the parent": (tree(lib_rs=LIB, a__mod_rs=AMOD, a__x_rs="use super::{self as p};\npub fn f() { p::y::g() }\n", a__y_rs="pub fn g() { super::x::f() }\n", a__z_rs=""), "import cycle between a::x, a::y"),
    "super::super in an inline module": (tree(lib_rs=LIB, a__mod_rs="mod b;\n", a__b__mod_rs="mod x;\nmod y;\n", a__b__x_rs="pub fn f() {}\nmod tests {\n    use super::super::y::g;\n}\n", a__b__y_rs="pub fn g() { super::x::f() }\n"), "import cycle between a::b::x, a::b::y"),
    "an inline module's super::super is not its file's": (tree(lib_rs=LIB, a__mod_rs="mod b;\nmod y;\n", a__b__mod_rs="mod x;\nmod y;\n", a__b__x_rs="mod tests {\n    use super::super::y::g;\n}\n", a__b__y_rs="pub fn g() {}\n", a__y_rs="pub fn h() { let _ = super::b::B; }\n"), None),
    "an alias in a group is not a module": (tree(lib_rs=LIB, a__mod_rs=AMOD, a__x_rs="use super::{y::Y as z};\n", a__y_rs="pub struct Y;\n", a__z_rs="use super::x::X;\n"), None),
    "broker and wasm apart": (tree(lib_rs="pub mod broker;\npub mod wasm;\n", broker_rs="use crate::wasm::Runtime;\n", wasm_rs="pub struct Runtime;\n"), "never import each other"),
    "a long fn": (tree(lib_rs=long("fn f() {")), "fn f is 72 lines"),
    "an array in the signature": (tree(lib_rs=long("fn f(x: [u8; 4]) -> [u8; 32] {")), "fn f is 72 lines"),
    "an attribute on the fn's line": (tree(lib_rs=long("#[inline] fn f() {")), "fn f is 72 lines"),
    "extern C": (tree(lib_rs=long('pub unsafe extern "C" fn f() {')), "fn f is 72 lines"),
    "a byte raw string with a brace": (tree(lib_rs=long('fn f() {\n    let _s = br#"a"}"#;')), "fn f is 73 lines"),
    "a raw string ending in a backslash": (tree(lib_rs=long('fn f() {\n    let _s = br"\\";')), "fn f is 73 lines"),
    "a where clause": (tree(lib_rs=long("fn f<T>(\n    t: T,\n) -> u8\nwhere\n    T: Clone,\n{")), "fn f is 77 lines"),
    "a trait's default body": (tree(lib_rs=long("trait T {\n    fn f(&self) {", "    }\n}")), "fn f is 72 lines"),
    "a declaration without a body": (tree(lib_rs="trait T {\n    fn f(&self, x: [u8; 4]);\n}\n" + "fn g() {}\n"), None),
    "a file over 400 lines": (tree(lib_rs="\n" * 401), "401 lines"),
}


def main():
    failed = 0
    for name, (files, expect) in CASES.items():
        with tempfile.TemporaryDirectory() as root:
            for path, text in files.items():
                full = os.path.join(root, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w") as f:
                    f.write(textwrap.dedent(text))
            run = subprocess.run([sys.executable, CHECK], env={**os.environ, "CHECK_HOUSE_ROOT": root}, capture_output=True, text=True)
            out = run.stdout + run.stderr
            ok = (run.returncode == 0) if expect is None else (run.returncode == 1 and expect in out)
            if not ok:
                failed += 1
                print(f"test-check-house: FAILED {name}: expected {'a pass' if expect is None else repr(expect)}, got (exit {run.returncode}):\n{out}")
    print(f"test-check-house: {len(CASES) - failed} of {len(CASES)} cases as expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
