"""The rules of the FTP conversation, as tables, with no sockets in sight.

protocol.py says what a command and a reply look like; this module says
which may follow which. It is written in the manner of h11's ``_state.py``:
every rule that decides what may be said next lives here, as data, and the
code around the tables only looks things up. So the whole conversation can
be read on two screens, and tested without a single socket
(tests/test_conversation.py).

Three tables:

* ``VERBS``: every command the server knows, with the Session method that
  carries it out and what it needs (an argument, a login, a data connection
  set up by PASV/EPSV/PORT/EPRT, a server that allows writing).
* ``TRANSITIONS``: how each reply moves the server's state. The state
  changes in one place only, ``ServerConversation.replied``, as the server
  answers, because it is the answer that says whether a command worked.
* ``EXPECTED``: which replies a client may get to each verb: a preliminary
  1xx (another reply follows), an intermediate 3xx (send the next command of
  the pair), a final 2xx; any 4xx/5xx refuses, and 421 closes the session.

References: RFC 959 section 5.4 (sequencing of commands and replies), RFC
2428 (EPSV, EPRT), RFC 3659 (REST, MLSD, MLST, MDTM, SIZE),
draft-somers-ftp-mfxx (MFMT).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .protocol import Code, Reply


# --- the server's states --------------------------------------------------------

class State(Enum):
    AWAITING_USER = "awaiting USER"     # just connected, or a login failed
    AWAITING_PASS = "awaiting PASS"     # USER was accepted (331)
    LOGGED_IN = "logged in"             # may do anything but move file bytes
    DATA_READY = "data ready"           # PASV/EPSV listens or PORT/EPRT named an address
    TRANSFERRING = "transferring"       # 150 sent: bytes are moving on the data connection
    RENAMING = "renaming"               # RNFR accepted (350): RNTO must come next
    CLOSED = "closed"                   # 221 or 421 sent: the session is over


NOT_LOGGED_IN = {State.AWAITING_USER, State.AWAITING_PASS}


# --- the verb table -------------------------------------------------------------

@dataclass(frozen=True)
class Verb:
    handler: str         # the Session method that carries the command out
    needs_arg: bool      # 501 without an argument
    needs_login: bool    # 530 before PASS succeeded
    opens_data: bool     # moves bytes on the data connection: 425 unless DATA_READY
    writes: bool         # changes the disk: 550 on a --read-only server


V = Verb
VERBS: dict[str, Verb] = {
    #         handler           arg    login  data   writes
    "USER": V("user_",          True,  False, False, False),
    "PASS": V("pass_",          False, False, False, False),
    "QUIT": V("quit_",          False, False, False, False),
    "NOOP": V("noop",           False, False, False, False),
    "SYST": V("syst",           False, False, False, False),
    "FEAT": V("feat",           False, False, False, False),
    "HELP": V("help_",          False, False, False, False),
    "OPTS": V("opts",           True,  False, False, False),
    "TYPE": V("type_",          True,  True,  False, False),
    "MODE": V("mode",           True,  True,  False, False),
    "STRU": V("stru",           True,  True,  False, False),
    "ALLO": V("allo",           False, True,  False, False),
    "REST": V("rest",           True,  True,  False, False),
    "PWD":  V("pwd",            False, True,  False, False),
    "CWD":  V("cwd_",           True,  True,  False, False),
    "CDUP": V("cdup",           False, True,  False, False),
    "MKD":  V("mkd",            True,  True,  False, True),
    "RMD":  V("rmd",            True,  True,  False, True),
    "DELE": V("dele",           True,  True,  False, True),
    "RNFR": V("rnfr",           True,  True,  False, True),
    "RNTO": V("rnto",           True,  True,  False, True),
    "PASV": V("pasv",           False, True,  False, False),
    "EPSV": V("epsv",           False, True,  False, False),
    "PORT": V("port",           True,  True,  False, False),
    "EPRT": V("eprt",           True,  True,  False, False),
    "RETR": V("retr",           True,  True,  True,  False),
    "STOR": V("stor",           True,  True,  True,  True),
    "APPE": V("appe",           True,  True,  True,  True),
    "LIST": V("list_",          False, True,  True,  False),
    "NLST": V("nlst",           False, True,  True,  False),
    "MLSD": V("mlsd",           False, True,  True,  False),
    "ABOR": V("abor",           False, True,  False, False),
    "MLST": V("mlst",           False, True,  False, False),
    "MDTM": V("mdtm",           True,  True,  False, False),
    "MFMT": V("mfmt",           True,  True,  False, True),
    "SIZE": V("size",           True,  True,  False, False),
    "HASH": V("hash_",          True,  True,  False, False),
    "STAT": V("stat",           False, True,  False, False),
}

# What FEAT announces (RFC 2389): one line each. "*" marks the MLST facts
# and the HASH algorithm in use.
FEATURES = ["EPRT", "EPSV", "HASH SHA-256*", "MDTM", "MFMT", "MLST type*;size*;modify*;perm*;",
            "PASV", "REST STREAM", "SIZE", "UTF8"]


# --- how replies move the server's state ----------------------------------------

ANY = "any"     # a key of TRANSITIONS[verb]: any reply not listed on its own

_DATA_VERBS = [verb for verb, rule in VERBS.items() if rule.opens_data]

# verb -> {reply code: state after that reply}. A reply with no entry leaves
# the state as it is. Whatever the verb, 421 ends the session (see replied).
TRANSITIONS: dict[str, dict] = {
    "USER": {Code.NEED_PASSWORD: State.AWAITING_PASS},
    "PASS": {Code.LOGGED_IN: State.LOGGED_IN, Code.NOT_LOGGED_IN: State.AWAITING_USER},
    "QUIT": {Code.GOODBYE: State.CLOSED},
    "PASV": {Code.PASSIVE: State.DATA_READY, ANY: State.LOGGED_IN},
    "EPSV": {Code.EXTENDED_PASSIVE: State.DATA_READY},      # "EPSV ALL" gets 200: no change
    "PORT": {Code.OK: State.DATA_READY, ANY: State.LOGGED_IN},
    "EPRT": {Code.OK: State.DATA_READY, ANY: State.LOGGED_IN},
    "RNFR": {Code.PENDING: State.RENAMING, ANY: State.LOGGED_IN},
    "RNTO": {ANY: State.LOGGED_IN},
    "ABOR": {ANY: State.LOGGED_IN},
    # A data connection carries one transfer: 150 starts it, and whatever
    # comes next (226, 426, 425, 550...) leaves no data connection behind.
    **{verb: {Code.OPENING_DATA: State.TRANSFERRING, ANY: State.LOGGED_IN} for verb in _DATA_VERBS},
}


@dataclass(frozen=True)
class Refusal:
    """A command the state does not allow, and the reply that says so."""
    code: Code
    text: str


class ServerConversation:
    """The server's side of the conversation: one attribute, ``state``.

    The session tells it each command it received (``received``: may this
    command be carried out now?) and each reply it sent (``replied``: which
    moves the state). Nothing else changes the state.
    """

    def __init__(self):
        self.state = State.AWAITING_USER
        self.verb: str | None = None        # the command being answered

    @property
    def logged_in(self) -> bool:
        return self.state not in NOT_LOGGED_IN and self.state is not State.CLOSED

    def received(self, verb: str) -> Refusal | None:
        """A command arrived: None if it may go ahead, else the refusal to send.

        Only the sequence is checked here; that the verb exists and has its
        argument is the table's business, and whether a data connection is
        ready is checked when the transfer starts (``data_ready``), after the
        path, so ``RETR missing`` gets 550 with or without PASV, as vsftpd does.
        """
        if self.state is State.RENAMING and verb != "RNTO":
            # RFC 959: RNTO must follow RNFR at once; anything else cancels it.
            self.state = State.LOGGED_IN
        refusal = self._out_of_sequence(verb)
        # A command refused here changes nothing: its reply moves no state.
        self.verb = None if refusal else verb
        return refusal

    def _out_of_sequence(self, verb: str) -> Refusal | None:
        if VERBS[verb].needs_login and self.state in NOT_LOGGED_IN:
            return Refusal(Code.NOT_LOGGED_IN, "Please log in with USER and PASS.")
        if verb == "PASS" and self.state is State.AWAITING_USER:
            return Refusal(Code.BAD_SEQUENCE, "Login with USER first.")
        if verb == "RNTO" and self.state is not State.RENAMING:
            return Refusal(Code.BAD_SEQUENCE, "RNTO needs an RNFR just before it.")
        return None

    def close(self) -> None:
        """The connection is gone (the client closed it) or being closed."""
        self.state = State.CLOSED

    def data_ready(self) -> Refusal | None:
        """Before a transfer: has PASV, EPSV, PORT or EPRT set one up?"""
        if self.state is not State.DATA_READY:
            return Refusal(Code.CANNOT_OPEN_DATA, "Use PORT, PASV or EPSV first.")
        return None

    def replied(self, code: int) -> None:
        """A reply went out: move the state as the tables say."""
        if code == Code.SERVICE_UNAVAILABLE:
            self.state = State.CLOSED        # 421: the server closes the connection
            return
        moves = TRANSITIONS.get(self.verb or "", {})
        new = moves.get(code, moves.get(ANY))
        if new is not None:
            self.state = new


# --- the client's side: what each reply means -------------------------------------

class Outcome(Enum):
    PRELIMINARY = "preliminary"     # 1xx: wait for another reply to the same command
    COMPLETED = "completed"         # 2xx: done
    INTERMEDIATE = "intermediate"   # 3xx: send the next command of the pair (PASS, RNTO, RETR...)
    REFUSED = "refused"             # 4xx, 5xx: the command failed; the session goes on
    CLOSING = "closing"             # 421: the server is closing the connection


# verb -> the reply kinds (first digits) that may answer it without refusing.
# 1 only for commands that open a data connection; 3 only for the first of a
# pair. The greeting is the answer to connecting (verb None).
EXPECTED: dict[str | None, set[int]] = {
    None: {1, 2},                                       # 120 wait, then 220
    "USER": {2, 3},                                     # 230 (no password needed) or 331
    "RNFR": {3},
    "REST": {3},
    **{verb: {1, 2} for verb in _DATA_VERBS},
}
DEFAULT_EXPECTED = {2}


class UnexpectedReply(Exception):
    """A reply that cannot answer the command sent, e.g. 150 to NOOP."""


class ClientConversation:
    """The client's side: tell it what you sent, and it says what a reply means.

        conversation = ClientConversation()     # expects the greeting first
        conversation.received(greeting)          # Outcome.COMPLETED
        conversation.sent("RETR")
        conversation.received(reply_150)         # Outcome.PRELIMINARY: read the next one
        conversation.received(reply_226)         # Outcome.COMPLETED
    """

    def __init__(self):
        self.verb: str | None = None
        self.waiting = True          # a reply is due (the greeting, at first)
        self.closed = False

    def sent(self, verb: str) -> None:
        if self.closed:
            raise UnexpectedReply("the server closed the session")
        self.verb, self.waiting = verb.upper(), True

    def received(self, reply: Reply) -> Outcome:
        if not self.waiting:
            raise UnexpectedReply(f"a reply nobody asked for: {reply}")
        if reply.code == Code.SERVICE_UNAVAILABLE:
            self.waiting, self.closed = False, True
            return Outcome.CLOSING
        kind = reply.kind
        if kind in (4, 5):
            self.waiting = False
            return Outcome.REFUSED
        if kind not in EXPECTED.get(self.verb, DEFAULT_EXPECTED):
            raise UnexpectedReply(f"{reply.code} cannot answer {self.verb or 'the connection'}")
        if kind == 1:
            return Outcome.PRELIMINARY          # still waiting: the final reply follows
        self.waiting = False
        if self.verb == "QUIT":
            self.closed = True
        return Outcome.COMPLETED if kind == 2 else Outcome.INTERMEDIATE
