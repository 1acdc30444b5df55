"""The sans-IO protocol core, fed byte strings: no sockets needed."""

import pytest

from solutions.protocol import (MAX_LINE, strip_telnet, NEED_DATA, Command, CommandParser, ConnectionClosed,
                                LineTooLong, MalformedLine, NotUtf8, Reply, ReplyParser,
                                UnsupportedFamily, format_command, format_eprt_arg,
                                format_epsv_reply, format_host_port, format_pasv_reply,
                                format_reply, parse_command, parse_eprt_arg, parse_epsv_reply,
                                parse_hash_reply, parse_host_port, parse_pasv_reply)


def events(parser, *chunks):
    """Feed chunks one by one, collecting every event until NEED_DATA."""
    out = []
    for chunk in chunks:
        parser.receive_data(chunk)
        while (event := parser.next_event()) is not NEED_DATA:
            out.append(event)
            if isinstance(event, ConnectionClosed):
                return out
    return out


def test_a_line_split_across_reads_is_one_command():
    parser = CommandParser()
    assert events(parser, b"RE", b"TR a.b", b"in\r") == []
    assert events(parser, b"\n") == [Command("RETR", "a.bin")]


def test_byte_at_a_time():
    parser = CommandParser()
    found = events(parser, *[bytes([b]) for b in b"USER anonymous\r\nPASS x\r\n"])
    assert found == [Command("USER", "anonymous"), Command("PASS", "x")]


def test_several_lines_in_one_read():
    parser = CommandParser()
    assert events(parser, b"NOOP\r\nPWD\r\nSYST\r\nLIST") == [Command("NOOP"), Command("PWD"), Command("SYST")]
    assert events(parser, b" -la\r\n") == [Command("LIST", "-la")]


def test_verbs_are_case_insensitive_and_arguments_keep_their_spaces():
    assert parse_command("retr My File.txt") == Command("RETR", "My File.txt")
    assert parse_command("Stor  two-spaces") == Command("STOR", " two-spaces")


def test_bare_lf_is_accepted_as_a_line_end():
    assert events(CommandParser(), b"NOOP\n") == [Command("NOOP")]


def test_empty_and_verbless_lines_are_malformed():
    parser = CommandParser()
    assert events(parser, b"\r\n", b"12345 x\r\n", b" NOOP\r\n") == [
        MalformedLine(""), MalformedLine("12345 x"), MalformedLine(" NOOP")]


def test_non_utf8_line_is_reported_and_the_next_line_still_parses():
    parser = CommandParser()
    assert events(parser, b"STOR \xff\xfe.bin\r\nNOOP\r\n") == [NotUtf8(b"STOR \xff\xfe.bin"), Command("NOOP")]


def test_overlong_line_is_dropped_once_and_parsing_goes_on():
    parser = CommandParser()
    long_arg = b"x" * (MAX_LINE * 3)
    # Sent in pieces, as TCP would deliver it: the parser must not hold it all.
    found = events(parser, b"STOR ", long_arg[:5000], long_arg[5000:], b"\r\nNOOP\r\n")
    assert len(found) == 2
    assert isinstance(found[0], LineTooLong) and found[0].length == 5 + len(long_arg)
    assert found[1] == Command("NOOP")


def test_a_line_of_exactly_the_limit_is_accepted():
    verb = b"STOR "
    line = verb + b"a" * (MAX_LINE - len(verb))
    assert events(CommandParser(), line + b"\r\n") == [Command("STOR", "a" * (MAX_LINE - len(verb)))]
    assert isinstance(events(CommandParser(), line + b"a\r\n")[0], LineTooLong)


def test_close_reports_the_unfinished_half_line():
    assert events(CommandParser(), b"NOOP\r\nRET", b"") == [Command("NOOP"), ConnectionClosed(b"RET")]


def test_single_and_multi_line_replies():
    parser = ReplyParser()
    found = events(parser, b"220 ready\r\n211-Features:\r\n SIZE\r\n",
                   b" 211 is not the end\r\n211 End\r\n226 done\r\n")
    assert [r.code for r in found] == [220, 211, 226]
    assert found[1].text == "Features:\n SIZE\n 211 is not the end\nEnd"
    assert found[1].lines[0] == "211-Features:" and len(found[1].lines) == 4


def test_format_reply_round_trips_through_the_reply_parser():
    for text in ["Transfer complete.", "Features:\n EPSV\n HASH SHA-256*\nEnd", "a\n226 tricky\nz"]:
        [reply] = events(ReplyParser(), format_reply(226, text))
        assert reply == Reply(226, text.replace("\n226 tricky", "\n 226 tricky"))


def test_multi_line_reply_indents_middle_lines_that_start_with_digits():
    assert format_reply(211, "first\n211 looks final\nlast") == b"211-first\r\n 211 looks final\r\n211 last\r\n"


def test_format_command():
    assert format_command("RETR", "a b.bin") == b"RETR a b.bin\r\n"
    assert format_command("PASV") == b"PASV\r\n"
    with pytest.raises(ValueError):
        format_command("RETR", "x\r\nDELE y")


@pytest.mark.parametrize("host,port", [("127.0.0.1", 21), ("10.1.2.3", 49153), ("0.0.0.0", 65535), ("255.255.255.255", 256)])
def test_pasv_and_port_round_trip(host, port):
    text = format_host_port(host, port)
    assert parse_host_port(text) == (host, port)
    assert parse_pasv_reply(format_pasv_reply(host, port)) == (host, port)


def test_port_bytes_are_high_then_low():
    assert format_host_port("127.0.0.1", 49153) == "127,0,0,1,192,1"
    assert parse_pasv_reply("Entering Passive Mode (127,0,0,1,4,1)") == ("127.0.0.1", 1025)
    assert parse_pasv_reply("=127,0,0,1,0,21") == ("127.0.0.1", 21)   # brackets are optional


@pytest.mark.parametrize("bad", ["1,2,3,4,5", "1,2,3,4,5,6,7", "256,0,0,1,0,21", "a,b,c,d,e,f", "", "1,2,3,4,-1,0"])
def test_malformed_port_arguments_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_host_port(bad)


@pytest.mark.parametrize("port", [1, 2121, 65535])
def test_epsv_round_trip(port):
    assert format_epsv_reply(port) == f"Entering Extended Passive Mode (|||{port}|)"
    assert parse_epsv_reply(format_epsv_reply(port)) == port
    assert parse_epsv_reply("Entering Extended Passive Mode (!!!%d!)" % port) == port


@pytest.mark.parametrize("host,port", [("127.0.0.1", 2121), ("::1", 40000), ("fe80::1", 1024)])
def test_eprt_round_trip(host, port):
    assert parse_eprt_arg(format_eprt_arg(host, port)) == (host, port)


def test_eprt_examples_from_rfc_2428():
    assert parse_eprt_arg("|1|132.235.1.2|6275|") == ("132.235.1.2", 6275)
    assert parse_eprt_arg("|2|1080::8:800:200C:417A|5282|") == ("1080::8:800:200c:417a", 5282)


@pytest.mark.parametrize("bad", ["|1|::1|21|", "|2|127.0.0.1|21|", "|1|127.0.0.1|0|", "|1|127.0.0.1|",
                                 "1|127.0.0.1|21|", "|1|127.0.0.1|70000|", "|1|nonsense|21|", "|"])
def test_malformed_eprt_is_rejected(bad):
    with pytest.raises(ValueError):
        parse_eprt_arg(bad)


def test_unknown_eprt_family_is_its_own_error():
    with pytest.raises(UnsupportedFamily):
        parse_eprt_arg("|3|127.0.0.1|2121|")


def test_hash_reply_range_is_end_exclusive():
    assert parse_hash_reply("SHA-256 0-5 ABCDEF a file.bin") == ("SHA-256", 0, 5, "abcdef")


def test_telnet_interrupt_and_synch_before_abor_are_removed():
    """RFC 959 4.1.3: IAC IP, IAC DM (urgent) then ABOR, as lftp sends it."""
    parser = CommandParser()
    parser.receive_data(b"\xff\xf4\xff\xf2ABOR\r\nNOOP\r\n")
    assert parser.next_event() == Command("ABOR")
    assert parser.next_event() == Command("NOOP")


def test_telnet_escaped_ff_and_option_negotiations():
    assert strip_telnet(b"a\xff\xffb") == b"a\xffb"              # IAC IAC is one 0xFF
    assert strip_telnet(b"RETR \xff\xfe.txt") == b"RETR \xff\xfe.txt"   # IAC DONT x: left, so not UTF-8
    assert strip_telnet(b"plain") == b"plain"
