"""Bytes on the wire: HTTP connections, decoding, redaction, downloads."""
