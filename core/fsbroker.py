"""``make run``'s broker: kombu's filesystem transport, with messages written
whole before a consumer can see them.

kombu's own transport creates a message file under its final name, then
writes it; a consumer listing the folder in between moves and reads an empty
file and fails to decode it, and the Celery worker exits (seen under load in
``make run``). Here a message is written under a name no consumer reads
(``.tmp`` after the queue's suffix) and renamed into place: a rename within a
folder is atomic, so a consumer sees a whole message or none.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.tmp"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    """``filesystem://`` means this transport in every process that calls it."""
    TRANSPORT_ALIASES["filesystem"] = "core.fsbroker:Transport"
