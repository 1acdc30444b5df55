"""The one parser of data-connection announcements and reply lines (trace.announce)."""

from __future__ import annotations

import pytest

from trace.announce import (announcement_in_line, announcement_of_event, ends_reply,
                            is_reply_line, parse_announcement, reply_code)


@pytest.mark.parametrize("kind, text, expected", [
    ("227", "227 Entering Passive Mode (127,0,0,1,195,80).", ("127.0.0.1", 195 * 256 + 80)),
    ("227", "227 =127,0,0,1,4,1", ("127.0.0.1", 1025)),            # brackets are optional
    ("227", "227 nonsense", None),
    ("227", "227 Entering Passive Mode (127,0,0,1,300,1)", None),  # not a byte
    ("229", "229 Entering Extended Passive Mode (|||6446|)", (None, 6446)),
    ("229", "229 Entering Extended Passive Mode (!!!6446!)", (None, 6446)),
    ("229", "229 Entering Extended Passive Mode (||6446|)", None),
    ("PORT", "10,0,0,2,4,2", ("10.0.0.2", 1026)),
    ("EPRT", "|2|::1|5282|", ("::1", 5282)),
    ("EPRT", "|2|0:0::1|5282|", ("::1", 5282)),                   # one spelling of IPv6
    ("EPRT", "|1|132.235.1.2|6275|", ("132.235.1.2", 6275)),
    ("EPRT", "|1|132.235.1.2|port|", None),
    ("EPRT", "", None),
])
def test_parse_announcement(kind, text, expected):
    assert parse_announcement(kind, text) == expected


@pytest.mark.parametrize("line, code", [
    ("220 Ready.", 220), ("211-Features:", 211), ("200", 200),
    (" EPSV", None), ("RETR 227.bin", None), ("2270 no", None), ("22", None), ("", None),
])
def test_reply_code(line, code):
    assert reply_code(line) == code
    assert is_reply_line(line) == (code is not None)


def test_ends_reply():
    assert ends_reply("211 End", 211) and ends_reply("211", 211)
    assert not ends_reply("211-Features:", 211) and not ends_reply("226 Done", 211)


@pytest.mark.parametrize("line, expected", [
    ("227 Entering Passive Mode (127,0,0,1,4,1)\r\n", ("127.0.0.1", 1025)),
    ("229 Entering Extended Passive Mode (|||6446|)", (None, 6446)),
    ("port 127,0,0,1,4,2", ("127.0.0.1", 1026)),                  # verbs are case-blind
    ("EPRT |1|127.0.0.1|6275|", ("127.0.0.1", 6275)),
    ("RETR 127,0,0,1,4,1", None),                                 # six numbers, not an announcement
    ("226 Transfer complete (127,0,0,1,4,1)", None),
    ("PORT", None),
])
def test_announcement_in_a_raw_control_line(line, expected):
    assert announcement_in_line(line) == expected


def test_announcement_of_trace_events():
    assert announcement_of_event({"type": "reply", "code": 227,
                                  "text": "227 Entering Passive Mode (127,0,0,1,4,1)."}) == \
        ("127.0.0.1", 1025)
    assert announcement_of_event({"type": "command", "verb": "EPRT",
                                  "arg": "|2|::1|5282|"}) == ("::1", 5282)
    assert announcement_of_event({"type": "reply", "code": 226, "text": "(127,0,0,1,4,1)"}) is None
    assert announcement_of_event({"type": "send", "len": 5}) is None


def test_importing_the_parser_is_cheap():
    """The tracer (in every server) may use it: no scapy, no correlation."""
    import subprocess
    import sys
    code = ("import sys; import trace.announce; "
            "print(sorted(m for m in sys.modules if m.startswith(('scapy', 'trace.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "scapy" not in out and "trace.correlate" not in out


def test_import_trace_loads_only_the_tracer():
    """What every traced server and client imports stays small; the rest of
    the package loads when a name from it is first used."""
    import subprocess
    import sys
    code = ("import sys, trace; print(*sorted(m for m in sys.modules if m.startswith(('trace', "
            "'scapy'))));from trace import load; print(*sorted(m for m in sys.modules "
            "if m.startswith('trace')))")
    first, then = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 timeout=60, check=True).stdout.splitlines()
    # The tracer may use the announcement parser (reply lines); nothing else.
    assert {"trace", "trace.tracer"} <= set(first.split()) <= {
        "trace", "trace.tracer", "trace.announce", "trace.addresses"}
    assert "trace.reader" in then.split() and "trace.correlate" not in then.split()
