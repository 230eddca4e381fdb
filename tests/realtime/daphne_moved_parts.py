"""Run daphne as a Twisted upgrade that moved private parts would: the write buffer's class
defaults (``dataBuffer``, ``offset``) and ``Request.chunked`` become per-instance attributes
set in ``__init__``. Twisted and daphne work as before; ``realtime.daphne_compat`` no longer
finds what it reads, so its start-up check must turn those speed-ups off.

    python tests/realtime/daphne_moved_parts.py -b 127.0.0.1 -p PORT config.asgi:application
"""

from __future__ import annotations

import sys

from twisted.internet import abstract, tcp
from twisted.web import http


def move_to_instances(cls, init_owner, names):
    defaults = {name: getattr(cls, name) for name in names}
    for name in names:
        for klass in cls.__mro__:
            if name in vars(klass):
                delattr(klass, name)
    init = init_owner.__init__

    def __init__(self, *args, **kwargs):
        for name, value in defaults.items():
            setattr(self, name, value)
        init(self, *args, **kwargs)

    init_owner.__init__ = __init__


move_to_instances(tcp.Connection, abstract.FileDescriptor, ("dataBuffer", "offset"))
move_to_instances(http.Request, http.Request, ("chunked",))

if __name__ == "__main__":
    from daphne.cli import CommandLineInterface

    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()
