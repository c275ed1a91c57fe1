"""s3vfs with SQLAlchemy 2: an ORM model whose database lives in S3, read and written in
place, across engine restarts (as a serverless app whose local disk is gone next time).

Settings come from the environment: S3VFS_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
and for a server other than AWS S3, AWS_ENDPOINT_URL_S3 (AWS_REGION if not us-east-1).
Needs a sqlite3 module that can load extensions (Debian's /usr/bin/python3 has one).
"""

import sqlite3

from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import s3vfs

# The VFS must exist before the first connection opens: load the extension once per
# process, on a throwaway connection. Every connection the engine opens can then use it.
s3vfs.load(sqlite3.connect(":memory:"))

# `uri=true` makes SQLAlchemy open "file:examples/app.db?vfs=s3" in SQLite's URI mode;
# other s3vfs parameters (bucket=, endpoint=, ...) may follow vfs=s3, URL-encoded.
URL = "sqlite:///file:examples/app.db?vfs=s3&uri=true"


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    done: Mapped[bool] = mapped_column(default=False)


def show(session, when):
    tasks = session.scalars(select(Task).order_by(Task.id)).all()
    print(when, [(t.title, t.done) for t in tasks])


engine = create_engine(URL)
Base.metadata.drop_all(engine)  # start every run from an empty table
Base.metadata.create_all(engine)
with Session(engine) as session:
    session.add_all([Task(title="write"), Task(title="test"), Task(title="ship")])
    session.commit()
    show(session, "created:")
engine.dispose()  # the app stops; nothing of the database stays on local disk

engine = create_engine(URL)  # a new engine, as in a new process
with Session(engine) as session:
    show(session, "after restart:")
    session.scalars(select(Task).where(Task.title == "write")).one().done = True
    session.delete(session.scalars(select(Task).where(Task.title == "ship")).one())
    session.commit()
engine.dispose()

engine = create_engine(URL)
with Session(engine) as session:
    show(session, "after update and delete:")
engine.dispose()
