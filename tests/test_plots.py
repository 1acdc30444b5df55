"""The notebook pictures, drawn from the shipped sample session."""

import matplotlib

matplotlib.use("Agg")

import pytest

import trace
from conftest import REPO_ROOT
from trace import model, plots
from trace.correlate import correlate, read_segments

SAMPLES = REPO_ROOT / "trace" / "samples"


@pytest.fixture(scope="module")
def sample_events():
    return list(trace.load(SAMPLES / "session.log"))


def test_lifetimes_draw_one_bar_per_connection_with_control_spanning_the_rest(sample_events):
    figure = plots.connection_lifetimes(sample_events)
    ax = figure.axes[0]
    session, _ = model.build(sample_events)
    bars = [c for c in ax.collections]               # one broken_barh per connection
    assert len(bars) == len(session.connections)
    spans = [(path.get_extents().x0, path.get_extents().x1)
             for bar in bars for path in bar.get_paths()]
    control, *data = spans
    assert all(control[0] <= start and end <= control[1] + 1e-9 for start, end in data)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "#1 control" and labels.count("#1 control") == 1


def test_time_sequence_graph_rises_to_the_file_size(sample_events):
    result = correlate(sample_events, read_segments(SAMPLES / "capture.pcap"))
    biggest = max((c for c in result.connections if c.channel == "data"),
                  key=lambda c: sum(s.len for s in c.segments))
    figure = plots.time_sequence(biggest)
    ax = figure.axes[0]
    carried = max(sum(s.len for s in biggest.segments if s.direction == d) for d in (0, 1))
    top = max(max(line.get_ydata(), default=0) for line in ax.get_lines())
    assert top >= carried            # the last stroke reaches seq = bytes sent (+1 for SYN)
    assert {t.get_text() for t in ax.texts} >= {"SYN", "FIN"}


def test_empty_trace_is_refused_clearly():
    with pytest.raises(ValueError, match="no connections"):
        plots.connection_lifetimes([])


def test_time_sequence_marks_retransmissions_apart():
    from test_correlate import _lossy_transfer
    cv, _, _ = _lossy_transfer()
    (conn,) = correlate(cv.events, cv.packets).connections
    ax = plots.time_sequence(conn).axes[0]
    (crosses,) = [line for line in ax.get_lines() if line.get_marker() == "x"]
    (again,) = [s for s in conn.segments if s.retransmission and s.len]
    first = min(s.t for s in conn.segments)
    assert list(crosses.get_xdata()) == pytest.approx([(again.t - first) * 1000])
    assert list(crosses.get_ydata()) == [again.rel_seq + again.len]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "retransmission (bytes sent again)" in legend
    red = [line for line in ax.get_lines() if line.get_color() == "tab:red" and
           line.get_linestyle() == "-"]
    assert len(red) == 1                           # the one repeated stroke


def test_time_sequence_without_loss_has_no_retransmission_marks(sample_events):
    result = correlate(sample_events, read_segments(SAMPLES / "capture.pcap"))
    for conn in result.connections:
        if conn.channel == "data" and any(s.len for s in conn.segments):
            ax = plots.time_sequence(conn).axes[0]
            assert not [line for line in ax.get_lines() if line.get_marker() == "x"]
            assert "retransmission (bytes sent again)" not in [
                t.get_text() for t in ax.get_legend().get_texts()]
