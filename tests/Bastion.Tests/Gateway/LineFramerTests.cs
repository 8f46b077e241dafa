using System.Buffers;
using System.Text;
using Bastion.Gateway;

namespace Bastion.Tests.Gateway;

public class LineFramerTests
{
    static LineStatus Frame(ReadOnlySequence<byte> buf, int max, out string line, out LineFlags flags, out long consumed)
    {
        var s = LineFramer.TryFrame(buf, max, out var pos, out var l, out flags);
        line = Encoding.Latin1.GetString(l.ToArray());
        consumed = buf.Slice(0, pos).Length;
        return s;
    }

    static ReadOnlySequence<byte> B(string s) => new(Encoding.Latin1.GetBytes(s));

    [Theory]
    [InlineData("USER bob\r\n", "USER bob", LineFlags.None, 10)]
    [InlineData("USER bob\n", "USER bob", LineFlags.BareLf, 9)]
    [InlineData("\r\n", "", LineFlags.None, 2)]
    [InlineData("\n", "", LineFlags.BareLf, 1)]
    [InlineData("DATA\rx\r\n", "DATA\rx", LineFlags.BareCr, 8)]
    [InlineData("a\rb\n", "a\rb", LineFlags.BareCr | LineFlags.BareLf, 4)]
    [InlineData("QUIT\r\nrest", "QUIT", LineFlags.None, 6)]
    public void Frames_one_line_without_its_terminator(string input, string expected, LineFlags expectedFlags, int expectedConsumed)
    {
        Assert.Equal(LineStatus.Line, Frame(B(input), 100, out var line, out var flags, out var consumed));
        Assert.Equal(expected, line);
        Assert.Equal(expectedFlags, flags);
        Assert.Equal(expectedConsumed, consumed);
    }

    [Theory]
    [InlineData("12345678\r\n", LineStatus.Line)]
    [InlineData("12345678\n", LineStatus.Line)]
    [InlineData("12345678\r", LineStatus.NeedMore)]
    [InlineData("12345678", LineStatus.NeedMore)]
    [InlineData("123456789", LineStatus.TooLong)]
    [InlineData("123456789\r\n", LineStatus.TooLong)]
    [InlineData("12345678\r\r\n", LineStatus.TooLong)]
    [InlineData("1234567890123", LineStatus.TooLong)]
    [InlineData("", LineStatus.NeedMore)]
    public void The_bound_is_on_the_line_without_its_terminator(string input, LineStatus expected)
    {
        Assert.Equal(expected, Frame(B(input), 8, out _, out _, out var consumed));
        if (expected != LineStatus.Line) Assert.Equal(0, consumed);
    }

    [Fact]
    public void TrySkipLine_discards_through_the_next_LF()
    {
        var buf = B("xxxxxxxx\r\nNEXT\r\n");
        Assert.True(LineFramer.TrySkipLine(buf, out var to));
        Assert.Equal(10, buf.Slice(0, to).Length);
        var none = B("xxxxxxxx");
        Assert.False(LineFramer.TrySkipLine(none, out var end));
        Assert.Equal(none.End, end);
    }

    const string Session = "EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n";

    [Fact]
    public void Every_prefix_yields_the_complete_lines_in_it_and_need_more_for_the_rest()
    {
        var all = Encoding.Latin1.GetBytes(Session);
        var expected = Session.Split("\r\n")[..^1];
        for (int len = 0; len <= all.Length; len++)
        {
            var buf = new ReadOnlySequence<byte>(all, 0, len);
            int n = 0;
            while (true)
            {
                var s = LineFramer.TryFrame(buf, 64, out var consumed, out var line, out var flags);
                if (s == LineStatus.NeedMore) break;
                Assert.Equal(LineStatus.Line, s);
                Assert.Equal(LineFlags.None, flags);
                Assert.Equal(expected[n++], Encoding.Latin1.GetString(line.ToArray()));
                buf = buf.Slice(consumed);
            }
            Assert.Equal(Session[..len].Split("\r\n").Length - 1, n);
        }
    }

    [Fact]
    public void Every_split_into_segments_gives_the_same_result_as_one_segment()
    {
        var inputs = new[] { Session, "a\rb\nc\r\n", "123456789\r\nabc\n", "\r\r\r\n", "x\r" };
        foreach (var text in inputs)
        {
            var data = Encoding.Latin1.GetBytes(text);
            var whole = Reference(data, 8);
            for (int i = 1; i < data.Length; i++)
                for (int j = i; j < data.Length; j++)
                {
                    var cut = Sequences.Cut(data, j == i ? [i] : [i, j]);
                    var s = LineFramer.TryFrame(cut, 8, out var pos, out var line, out var flags);
                    Assert.Equal(whole, (s, s == LineStatus.Line ? (int)line.Length : -1, s == LineStatus.Line ? flags : LineFlags.None, cut.Slice(0, pos).Length));
                }
        }
    }

    /// <summary>The framing rule written the plain way, to compare against.</summary>
    static (LineStatus, int, LineFlags, long) Reference(byte[] d, int max)
    {
        int lf = Array.IndexOf(d, (byte)'\n');
        if (lf < 0 || lf > max + 1)
        {
            if (d.Length > max + 1 || (d.Length == max + 1 && d[^1] != '\r')) return (LineStatus.TooLong, -1, LineFlags.None, 0);
            return lf < 0 ? (LineStatus.NeedMore, -1, LineFlags.None, 0) : (LineStatus.TooLong, -1, LineFlags.None, 0);
        }
        int end = lf;
        var flags = LineFlags.None;
        if (end > 0 && d[end - 1] == '\r') end--;
        else flags |= LineFlags.BareLf;
        if (end > max) return (LineStatus.TooLong, -1, LineFlags.None, 0);
        if (Array.IndexOf(d, (byte)'\r', 0, end) >= 0) flags |= LineFlags.BareCr;
        return (LineStatus.Line, end, flags, lf + 1);
    }

    [Fact]
    public void Random_mutations_never_throw_and_agree_with_the_plain_rule()
    {
        var rng = new Random(8);
        var seed = Encoding.Latin1.GetBytes(Session);
        byte[] alphabet = [(byte)'\r', (byte)'\n', (byte)'a', 0, 0xff, (byte)' '];
        for (int iter = 0; iter < 5000; iter++)
        {
            var d = seed.ToList();
            int edits = rng.Next(1, 6);
            for (int e = 0; e < edits && d.Count > 0; e++)
            {
                int at = rng.Next(d.Count);
                switch (rng.Next(3))
                {
                    case 0: d[at] = alphabet[rng.Next(alphabet.Length)]; break;
                    case 1: d.Insert(at, alphabet[rng.Next(alphabet.Length)]); break;
                    default: d.RemoveAt(at); break;
                }
            }
            var data = d.Take(rng.Next(d.Count + 1)).ToArray();
            int max = rng.Next(0, 40);
            var expected = Reference(data, max);
            var seq = data.Length > 2 && rng.Next(2) == 0 ? Sequences.Cut(data, rng.Next(1, data.Length)) : new ReadOnlySequence<byte>(data);
            var s = LineFramer.TryFrame(seq, max, out var pos, out var line, out var flags);
            Assert.Equal(expected, (s, s == LineStatus.Line ? (int)line.Length : -1, s == LineStatus.Line ? flags : LineFlags.None, seq.Slice(0, pos).Length));
            if (s == LineStatus.Line) Assert.True(line.Length <= max && line.PositionOf((byte)'\n') is null);
        }
    }
}
