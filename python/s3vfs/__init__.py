"""The s3vfs SQLite extension, shipped as a Python package.

s3vfs keeps a SQLite database in S3 and reads and writes it in place. This package carries
the compiled extension and loads it into a `sqlite3` or `apsw` connection::

    import sqlite3, s3vfs

    s3vfs.load(sqlite3.connect(":memory:"))       # registers the "s3" VFS for the process
    db = sqlite3.connect("file:apps/notes.db?vfs=s3&bucket=my-bucket", uri=True)

The extension loads permanently: after one `load`, every later connection of the same
SQLite library in this process can open `?vfs=s3` URIs and call the `s3vfs_*` SQL
functions. Python's `sqlite3` and `apsw` each bring their own SQLite library, and the
extension serves the first one it is loaded into: use one of them per process.
"""

from pathlib import Path

__all__ = ["loadable_path", "load"]

# The SQLite library (named by its Python module: "sqlite3", "apsw", ...) the extension
# was loaded into; loading it into a second one registers nothing there.
_loaded_into = None


def loadable_path() -> str:
    """The bundled extension's path *without* its file suffix (`.../s3vfs/libs3vfs`).

    That is the form `load_extension` and the sqlite3 shell's `.load` take on every
    platform: SQLite tries the name as given, then with `.so`, `.dylib` or `.dll` added.
    The file itself is `loadable_path() + ".so"` on Linux.
    """
    return str(Path(__file__).resolve().with_name("libs3vfs"))


def load(conn) -> None:
    """Loads the extension into `conn`, a `sqlite3.Connection` or an `apsw.Connection`.

    Turns extension loading on for the call and off again afterwards, so SQL run later on
    `conn` cannot load libraries with `load_extension()`. Loading again into the same
    SQLite library does no harm; loading into a second one (apsw after sqlite3) raises.
    """
    global _loaded_into
    library = _sqlite_library(conn)
    if _loaded_into not in (None, library):
        raise RuntimeError(
            f"s3vfs is already loaded into {_loaded_into}'s SQLite library in this process "
            f"and cannot serve {library}'s as well: use one of them per process"
        )
    if not hasattr(conn, "enable_load_extension"):
        raise RuntimeError(
            f"{type(conn).__module__}.{type(conn).__name__} cannot load extensions: this "
            "Python's sqlite3 module was built without extension loading (as pyenv and "
            "some distributions build it). Use apsw, or a Python whose sqlite3 has "
            "Connection.enable_load_extension (Debian's /usr/bin/python3 has)."
        )
    # sqlite3 and apsw spell both methods the same way.
    conn.enable_load_extension(True)
    try:
        conn.load_extension(loadable_path())
    finally:
        conn.enable_load_extension(False)
    _loaded_into = library


def _sqlite_library(conn) -> str:
    """The top-level module of the connection's class: each has its own SQLite library."""
    for cls in type(conn).__mro__:
        if cls.__name__ == "Connection":
            return cls.__module__.split(".")[0]
    return type(conn).__module__.split(".")[0]
