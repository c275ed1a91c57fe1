"""The scripts tests run in other processes: each loads s3vfs first, from the library path
given as its first argument (`s3util.LIB`), as an application would."""

import textwrap

BOOT = textwrap.dedent("""
    import sqlite3, sys
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(sys.argv[1])
""")


def script(body):
    """`body` (indented as in the test file) after the lines that load s3vfs; `sqlite3`
    and `sys` are imported already."""
    return BOOT + textwrap.dedent(body)
