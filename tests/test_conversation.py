"""Every rule of the conversation table (solutions/conversation.py), without a socket
(and, at the end, the client that reads its replies by it).

The server's side: which command may come when, and how each reply moves
the state. The client's side: what each reply to each command means.
"""

from __future__ import annotations

import socket

import pytest

from solutions.conversation import (ANY, EXPECTED, FEATURES, NOT_LOGGED_IN, TRANSITIONS, VERBS,
                                    ClientConversation, Outcome, ServerConversation, State,
                                    UnexpectedReply)
from solutions.protocol import Code, Reply
from solutions.session import Session

DATA_VERBS = sorted(verb for verb, rule in VERBS.items() if rule.opens_data)


def conversation_in(state: State) -> ServerConversation:
    """A server conversation brought to ``state`` the way a real one gets there."""
    conversation = ServerConversation()
    steps = {
        State.AWAITING_USER: [],
        State.AWAITING_PASS: [("USER", Code.NEED_PASSWORD)],
        State.LOGGED_IN: [("USER", Code.NEED_PASSWORD), ("PASS", Code.LOGGED_IN)],
        State.DATA_READY: [("USER", Code.NEED_PASSWORD), ("PASS", Code.LOGGED_IN), ("PASV", Code.PASSIVE)],
        State.TRANSFERRING: [("USER", Code.NEED_PASSWORD), ("PASS", Code.LOGGED_IN), ("PASV", Code.PASSIVE),
                             ("RETR", Code.OPENING_DATA)],
        State.RENAMING: [("USER", Code.NEED_PASSWORD), ("PASS", Code.LOGGED_IN), ("RNFR", Code.PENDING)],
    }[state]
    for verb, code in steps:
        assert conversation.received(verb) is None
        conversation.replied(code)
    assert conversation.state is state
    return conversation


# --- the tables agree with themselves and with the session ---------------------------------

@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_its_handler(verb):
    assert callable(getattr(Session, VERBS[verb].handler)), verb


def test_transitions_and_expectations_name_only_known_verbs():
    assert set(TRANSITIONS) <= set(VERBS)
    assert set(EXPECTED) - {None} <= set(VERBS)
    for moves in TRANSITIONS.values():
        assert all(key == ANY or isinstance(key, Code) for key in moves)
        assert all(isinstance(state, State) for state in moves.values())


def test_feat_announces_only_verbs_the_table_has():
    for feature in FEATURES:
        name = feature.split()[0]
        assert name in VERBS or name == "UTF8", feature


def test_data_verbs_may_get_a_preliminary_reply_and_nothing_else_may():
    for verb in VERBS:
        assert (1 in EXPECTED.get(verb, {2})) == VERBS[verb].opens_data, verb


# --- server: preconditions ------------------------------------------------------------------------

@pytest.mark.parametrize("state", sorted(NOT_LOGGED_IN, key=lambda s: s.value))
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_before_login_only_the_login_free_verbs_go_ahead(state, verb):
    conversation = conversation_in(state)
    refusal = conversation.received(verb)
    if VERBS[verb].needs_login:
        assert refusal is not None and refusal.code == Code.NOT_LOGGED_IN
    elif verb == "PASS" and state is State.AWAITING_USER:
        assert refusal is not None and refusal.code == Code.BAD_SEQUENCE
    else:
        assert refusal is None


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_refused_command_moves_no_state(verb):
    conversation = conversation_in(State.AWAITING_USER)
    refusal = conversation.received(verb)
    if refusal is not None:
        conversation.replied(refusal.code)
        assert conversation.state is State.AWAITING_USER


@pytest.mark.parametrize("verb", DATA_VERBS)
def test_a_transfer_needs_a_data_connection_set_up(verb):
    conversation = conversation_in(State.LOGGED_IN)
    assert conversation.received(verb) is None            # the path is checked first (550 before 425)
    assert conversation.data_ready().code == Code.CANNOT_OPEN_DATA
    conversation = conversation_in(State.DATA_READY)
    assert conversation.received(verb) is None
    assert conversation.data_ready() is None


def test_rnto_only_right_after_rnfr():
    conversation = conversation_in(State.LOGGED_IN)
    assert conversation.received("RNTO").code == Code.BAD_SEQUENCE
    conversation = conversation_in(State.RENAMING)
    assert conversation.received("RNTO") is None
    conversation.replied(Code.FILE_ACTION_OK)
    assert conversation.state is State.LOGGED_IN


@pytest.mark.parametrize("verb", sorted(set(VERBS) - {"RNTO"}))
def test_any_other_command_cancels_a_rename(verb):
    conversation = conversation_in(State.RENAMING)
    conversation.received(verb)
    assert conversation.state is not State.RENAMING
    assert conversation.received("RNTO").code == Code.BAD_SEQUENCE


# --- server: how replies move the state ------------------------------------------------------------

@pytest.mark.parametrize("start,verb,code,end", [
    (State.AWAITING_USER, "USER", Code.NEED_PASSWORD, State.AWAITING_PASS),
    (State.AWAITING_PASS, "USER", Code.NEED_PASSWORD, State.AWAITING_PASS),
    (State.AWAITING_PASS, "PASS", Code.LOGGED_IN, State.LOGGED_IN),
    (State.AWAITING_PASS, "PASS", Code.NOT_LOGGED_IN, State.AWAITING_USER),
    (State.LOGGED_IN, "PASS", Code.LOGGED_IN, State.LOGGED_IN),          # "Already logged in."
    (State.LOGGED_IN, "USER", Code.NEED_PASSWORD, State.AWAITING_PASS),  # a new login starts over
    (State.LOGGED_IN, "PASV", Code.PASSIVE, State.DATA_READY),
    (State.LOGGED_IN, "EPSV", Code.EXTENDED_PASSIVE, State.DATA_READY),
    (State.LOGGED_IN, "EPSV", Code.OK, State.LOGGED_IN),                 # EPSV ALL
    (State.LOGGED_IN, "PORT", Code.OK, State.DATA_READY),
    (State.LOGGED_IN, "EPRT", Code.OK, State.DATA_READY),
    (State.DATA_READY, "PORT", Code.BAD_ARGUMENTS, State.LOGGED_IN),     # the old one was dropped
    (State.DATA_READY, "EPRT", Code.NETWORK_PROTOCOL_NOT_SUPPORTED, State.LOGGED_IN),
    (State.DATA_READY, "PASV", Code.PASSIVE, State.DATA_READY),
    (State.DATA_READY, "NOOP", Code.OK, State.DATA_READY),
    (State.DATA_READY, "TYPE", Code.OK, State.DATA_READY),
    (State.DATA_READY, "SIZE", Code.FILE_UNAVAILABLE, State.DATA_READY),
    (State.DATA_READY, "REST", Code.PENDING, State.DATA_READY),          # curl: EPSV, REST, RETR
    (State.DATA_READY, "ABOR", Code.NO_TRANSFER, State.LOGGED_IN),
    (State.TRANSFERRING, "RETR", Code.TRANSFER_COMPLETE, State.LOGGED_IN),
    (State.TRANSFERRING, "RETR", Code.TRANSFER_ABORTED, State.LOGGED_IN),
    (State.LOGGED_IN, "RNFR", Code.PENDING, State.RENAMING),
    (State.LOGGED_IN, "RNFR", Code.FILE_UNAVAILABLE, State.LOGGED_IN),
    (State.RENAMING, "RNTO", Code.NAME_NOT_ALLOWED, State.LOGGED_IN),
    (State.LOGGED_IN, "QUIT", Code.GOODBYE, State.CLOSED),
    (State.AWAITING_USER, "QUIT", Code.GOODBYE, State.CLOSED),
])
def test_replies_move_the_state(start, verb, code, end):
    conversation = conversation_in(start)
    if start is not State.TRANSFERRING:
        assert conversation.received(verb) is None
    conversation.replied(code)
    assert conversation.state is end


@pytest.mark.parametrize("verb", DATA_VERBS)
@pytest.mark.parametrize("final", [Code.TRANSFER_COMPLETE, Code.TRANSFER_ABORTED, Code.CANNOT_OPEN_DATA,
                                   Code.FILE_UNAVAILABLE, Code.INSUFFICIENT_STORAGE])
def test_a_data_connection_serves_one_transfer(verb, final):
    conversation = conversation_in(State.DATA_READY)
    assert conversation.received(verb) is None
    if final in (Code.TRANSFER_COMPLETE, Code.TRANSFER_ABORTED, Code.INSUFFICIENT_STORAGE):
        conversation.replied(Code.OPENING_DATA)
        assert conversation.state is State.TRANSFERRING
    conversation.replied(final)
    assert conversation.state is State.LOGGED_IN


@pytest.mark.parametrize("state", [s for s in State if s is not State.CLOSED])
def test_421_closes_from_every_state(state):
    conversation = conversation_in(state)
    conversation.replied(Code.SERVICE_UNAVAILABLE)
    assert conversation.state is State.CLOSED


def test_the_session_has_one_state_attribute():
    """Issue 11: the state is the conversation's, not eight flags of the session."""
    import inspect
    source = inspect.getsource(Session)
    assert "self.logged_in" not in source
    assert source.count("conversation.state =") == 0
    assert "def replied" in inspect.getsource(ServerConversation)


# --- client: what a reply means ------------------------------------------------------------------

def reply(code: int) -> Reply:
    return Reply(code, "text")


def test_the_greeting():
    conversation = ClientConversation()
    assert conversation.received(reply(120)) is Outcome.PRELIMINARY
    assert conversation.received(reply(220)) is Outcome.COMPLETED
    with pytest.raises(UnexpectedReply):
        conversation.received(reply(200))                    # nobody asked


@pytest.mark.parametrize("verb", DATA_VERBS)
def test_a_transfer_is_150_then_226(verb):
    conversation = ClientConversation()
    conversation.received(reply(220))
    conversation.sent(verb)
    assert conversation.received(reply(150)) is Outcome.PRELIMINARY
    assert conversation.received(reply(226)) is Outcome.COMPLETED
    conversation.sent(verb)
    assert conversation.received(reply(425)) is Outcome.REFUSED


@pytest.mark.parametrize("verb,code", [("USER", 331), ("RNFR", 350), ("REST", 350)])
def test_the_first_of_a_pair_gets_an_intermediate_reply(verb, code):
    conversation = ClientConversation()
    conversation.received(reply(220))
    conversation.sent(verb)
    assert conversation.received(reply(code)) is Outcome.INTERMEDIATE


@pytest.mark.parametrize("verb", sorted(set(VERBS) - set(DATA_VERBS)))
def test_a_preliminary_reply_to_anything_else_is_a_protocol_error(verb):
    conversation = ClientConversation()
    conversation.received(reply(220))
    conversation.sent(verb)
    with pytest.raises(UnexpectedReply):
        conversation.received(reply(150))


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_errors_refuse_and_421_closes_whatever_was_sent(verb):
    conversation = ClientConversation()
    conversation.received(reply(220))
    conversation.sent(verb)
    assert conversation.received(reply(550)) is Outcome.REFUSED
    conversation.sent(verb)
    assert conversation.received(reply(451)) is Outcome.REFUSED
    conversation.sent(verb)
    assert conversation.received(reply(421)) is Outcome.CLOSING
    with pytest.raises(UnexpectedReply):
        conversation.sent("NOOP")


def test_quit_closes():
    conversation = ClientConversation()
    conversation.received(reply(220))
    conversation.sent("quit")
    assert conversation.received(reply(221)) is Outcome.COMPLETED
    assert conversation.closed


# --- the client reads its replies by this table ---------------------------------

@pytest.fixture
def scripted_client():
    """An FtpClient talking to a socket this test writes the server's replies to."""
    from solutions.ftpclient import FtpClient
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = FtpClient("127.0.0.1", listener.getsockname()[1], timeout=5)
        client.control = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    with server:
        yield client, server
    client.close()


def test_the_client_waits_past_a_preliminary_reply_and_owes_until_the_final(scripted_client):
    client, server = scripted_client
    server.sendall(b"150 Opening.\r\n226 Done.\r\n")
    assert client.command("RETR", "f").code == 150
    assert client.unanswered == 1                      # the 226 is still owed
    assert client.read_reply().code == 226
    assert client.unanswered == 0


def test_the_client_reads_a_transfer_and_its_abor_in_turn(scripted_client):
    """After Ctrl-C, one command owes two replies: the transfer's, then ABOR's."""
    client, server = scripted_client
    server.sendall(b"150 Opening.\r\n")
    assert client.command("RETR", "f").code == 150
    server.sendall(b"426 Aborted.\r\n226 ABOR successful.\r\n")
    assert [reply.code for reply in client.abort()] == [426, 226]
    assert client.unanswered == 0


def test_a_reply_that_cannot_answer_the_command_closes_the_client(scripted_client):
    from solutions.ftpclient import ConnectionLost
    client, server = scripted_client
    server.sendall(b"150 Not a NOOP reply.\r\n")
    with pytest.raises(ConnectionLost, match="makes no sense"):
        client.command("NOOP")
    assert client.control is None                      # out of step: closed


def test_the_client_stops_after_421(scripted_client):
    from solutions.ftpclient import ConnectionLost
    client, server = scripted_client
    server.sendall(b"421 Shutting down.\r\n")
    with pytest.raises(ConnectionLost, match="421"):
        client.command("NOOP")
    with pytest.raises(ConnectionLost, match="closed the session"):
        client.command("NOOP")
