"""Edit3D wire protocol: signed ZeroMQ + msgpack messages between Blender and the sidecar.

Pure Python (msgpack, pyzmq, numpy); relative imports only, because the package is also
vendored into the Blender add-on. The specification is SPEC.md next to this file.
"""

from .client import Call, Client, KeepAlive
from .codec import Codec, Envelope, ReplayGuard, ReplayGuards
from .connection import (
    ConnectionFileError,
    ConnectionInfo,
    InsecureTransportError,
    check_private_ipc,
    configure_curve_client,
    configure_curve_server,
    curve_available,
    curve_keypair,
    is_loopback,
    load_connection_file,
    load_curve_keypair,
    new_key,
    private_ipc_endpoint,
    transport_authenticates,
    write_connection_file,
    write_curve_keypair,
)
from .droplog import DropLog
from .errors import ErrorCode, ProtocolError, RemoteError, RequestTimeout, VersionMismatch
from .messages import *  # noqa: F403  (the message set is the package's vocabulary)
from .messages import (
    EVENT_TYPES,
    MESSAGE_TYPES,
    Camera,
    Header,
    JobInfo,
    Message,
    SessionInfo,
    TurnInfo,
)
from .schema import DTYPES, Record, Rule
from .server import EventLog, Incoming, InsecureBindError, ServerEndpoint
from .version import PROTOCOL_VERSION
from .wire import REQUEST_LIMITS, Limits

__all__ = [
    "DTYPES",
    "EVENT_TYPES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "REQUEST_LIMITS",
    "Call",
    "Client",
    "KeepAlive",
    "Codec",
    "ConnectionFileError",
    "ConnectionInfo",
    "DropLog",
    "Envelope",
    "ErrorCode",
    "EventLog",
    "Header",
    "Incoming",
    "InsecureBindError",
    "InsecureTransportError",
    "Limits",
    "Message",
    "ProtocolError",
    "Record",
    "RemoteError",
    "ReplayGuard",
    "ReplayGuards",
    "RequestTimeout",
    "Rule",
    "ServerEndpoint",
    "VersionMismatch",
    "check_private_ipc",
    "configure_curve_client",
    "configure_curve_server",
    "curve_available",
    "curve_keypair",
    "is_loopback",
    "load_connection_file",
    "load_curve_keypair",
    "new_key",
    "private_ipc_endpoint",
    "transport_authenticates",
    "write_connection_file",
    "write_curve_keypair",
    *(cls.__name__ for cls in MESSAGE_TYPES.values()),
    "Camera",
    "JobInfo",
    "SessionInfo",
    "TurnInfo",
]
