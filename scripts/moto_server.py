"""moto_server, with one fix the tests need: S3's conditional writes made atomic.

moto 5.2's put_object checks If-Match / If-None-Match and then stores the object as two
separate steps, on a threaded server: two conditional PUTs on the same key that arrive
together can both pass the check, which S3 never allows. The writer lease relies on
exactly that guarantee, so a test server that breaks it under load could let two test
processes hold one lease and lose an update the code under test did not lose. Object
writes and deletes are serialized here (moto keeps objects in memory, so the critical
section is short); everything else is moto as installed.
"""

import sys
import threading

from moto.s3.responses import S3Response
from moto.server import main

_WRITES = threading.Lock()


def _serialized(method):
    def run(self, *args, **kwargs):
        with _WRITES:
            return method(self, *args, **kwargs)

    run.__name__ = method.__name__
    return run


for name in ("put_object", "delete_object"):
    setattr(S3Response, name, _serialized(getattr(S3Response, name)))

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
