"""Protocol version: the major number must match between peers; minor adds fields/types."""

PROTOCOL_VERSION: tuple[int, int] = (2, 1)
