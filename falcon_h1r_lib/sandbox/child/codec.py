"""Plain data across the solution/grader pipe pair: tagged-JSON encode/decode and newline framing.

Separate because both roles speak it and it alone decides what a candidate value may become in the grader:
builtins only, so nothing the candidate defines (a class with `__eq__` always True) crosses.
"""

import base64
import importlib
import json
import os

PLAIN = "None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset"


class NotPlainData(TypeError):
    """A value that cannot cross to the grader: anything but PLAIN (a candidate class could fake `==`)."""


class BadReply(BaseException):
    """The solution side wrote something that is not a reply: a failure, not a pass."""


def encode(value, depth=0):
    """Plain data as tagged JSON; subclasses of plain types cross as their base value (their methods stay)."""
    if depth > 200:
        raise NotPlainData("nested deeper than 200 levels")
    if value is None or type(value) is bool:
        return value
    if isinstance(value, int):
        return int.__index__(value) if type(value) is not int else value
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, complex):
        c = complex.__complex__(value)
        return {"complex": [c.real, c.imag]}
    if isinstance(value, (bytes, bytearray)):
        tag = "bytearray" if isinstance(value, bytearray) else "bytes"
        return {tag: base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"tuple": [encode(v, depth + 1) for v in tuple.__iter__(value)]}
    if isinstance(value, frozenset):
        return {"frozenset": [encode(v, depth + 1) for v in frozenset.__iter__(value)]}
    if isinstance(value, set):
        return {"set": [encode(v, depth + 1) for v in set.__iter__(value)]}
    if isinstance(value, dict):
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(value)]}
    raise NotPlainData(f"a {type(value).__qualname__} is not plain data ({PLAIN})")


def decode(value, refs=None):
    """Tagged JSON back to builtins only; `refs(name)` resolves a solution callable passed as an argument."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [decode(v, refs) for v in value]
    if type(value) is dict and len(value) == 1:
        (tag, body), = value.items()
        if tag == "tuple" and type(body) is list:
            return tuple(decode(v, refs) for v in body)
        if tag == "set" and type(body) is list:
            return {decode(v, refs) for v in body}
        if tag == "frozenset" and type(body) is list:
            return frozenset(decode(v, refs) for v in body)
        if tag == "dict" and type(body) is list and all(type(kv) is list and len(kv) == 2 for kv in body):
            return {decode(k, refs): decode(v, refs) for k, v in body}
        if tag in ("bytes", "bytearray") and type(body) is str:
            raw = base64.b64decode(body, validate=True)
            return bytearray(raw) if tag == "bytearray" else raw
        if tag == "complex" and type(body) is list and len(body) == 2 and all(type(x) is float for x in body):
            return complex(body[0], body[1])
        if tag == "ref" and type(body) is str and refs is not None:
            return refs(body)
        if tag == "module" and type(body) is str and refs is not None:
            return importlib.import_module(body)
    raise ValueError(f"not a plain-data encoding: {str(value)[:200]}")


def text_of(exc):
    try:
        return str(exc)[:2000]
    except BaseException:
        return "<unprintable message>"


class Lines:
    """Newline-framed messages from a pipe, refusing any longer than `cap` bytes."""

    def __init__(self, fd, cap):
        self.fd, self.cap, self.buf = fd, cap, bytearray()

    def read(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > self.cap:
                raise BadReply(f"a reply longer than {self.cap} bytes")
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk


def send(fd, message):
    data = memoryview((json.dumps(message) + "\n").encode())
    while data:
        data = data[os.write(fd, data):]
