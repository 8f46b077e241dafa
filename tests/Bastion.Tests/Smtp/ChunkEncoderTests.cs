using System.Buffers;
using System.Text;
using Bastion.Protocols.Smtp;

namespace Bastion.Tests.Smtp;

/// <summary>BDAT chunks to DATA: dot-stuffing, the closing CRLF, bare newlines refused or normalised, sizes, any split into chunks.</summary>
public class ChunkEncoderTests
{
    sealed record Run(string Output, string? Refusal, int Code, string Enhanced, long Size);

    /// <summary>Encodes <paramref name="input"/> fed in pieces of at most <paramref name="piece"/> bytes, then Finish.</summary>
    static Run Encode(string input, BareNewlineMode mode = BareNewlineMode.Refuse, long max = long.MaxValue, int piece = int.MaxValue)
    {
        var bytes = Encoding.Latin1.GetBytes(input);
        var e = new ChunkEncoder(mode, max);
        e.Reset();
        var output = new ArrayBufferWriter<byte>();
        for (int at = 0; at < bytes.Length; at += piece)
            e.Feed(bytes.AsSpan(at, Math.Min(piece, bytes.Length - at)), output);
        e.Finish(output);
        return new Run(Encoding.Latin1.GetString(output.WrittenSpan), e.Refusal, e.RefusalCode, e.RefusalEnhanced, e.Size);
    }

    /// <summary>What a server reading the DATA stream makes of it: the message up to the one end, un-stuffed.</summary>
    static string ServerReads(string output)
    {
        var s = new DataScanner(BareNewlineMode.Refuse, long.MaxValue);
        s.Reset();
        var sink = new ArrayBufferWriter<byte>();
        var wire = Encoding.Latin1.GetBytes(output + ".\r\n");
        Assert.Equal(DataStatus.End, s.Feed(wire, sink, out var used));
        Assert.Equal(wire.Length, used);
        Assert.Null(s.Refusal);
        var lines = Encoding.Latin1.GetString(sink.WrittenSpan).Split("\r\n");
        return string.Join("\r\n", lines.Select(l => l.StartsWith('.') ? l[1..] : l));
    }

    [Fact]
    public void Lines_starting_with_a_dot_are_stuffed_and_read_back_intact()
    {
        const string message = "Subject: t\r\n\r\n.\r\n..two\r\n.leading\r\nend\r\n";
        var r = Encode(message);
        Assert.Equal("Subject: t\r\n\r\n..\r\n...two\r\n..leading\r\nend\r\n", r.Output);
        Assert.Equal(message, ServerReads(r.Output));
        Assert.Equal(message.Length, r.Size);
    }

    [Fact]
    public void An_unfinished_last_line_gets_its_crlf_and_an_empty_message_stays_empty()
    {
        Assert.Equal("no newline at the end\r\n", Encode("no newline at the end").Output);
        Assert.Equal("..x\r\n", Encode(".x").Output);
        Assert.Equal("", Encode("").Output);
    }

    [Theory]
    [InlineData("a\nb", "bare LF")]
    [InlineData("a\rb", "bare CR")]
    [InlineData("a\r", "bare CR")]
    [InlineData("hello\r\n.\n", "bare LF")]
    [InlineData("hello\r\n.\r", "bare CR")]
    public void Bare_newlines_are_refused_by_default(string input, string why)
    {
        var r = Encode(input);
        Assert.Equal(554, r.Code);
        Assert.Contains(why, r.Refusal);
    }

    [Fact]
    public void Normalising_writes_bare_newlines_as_crlf_and_stuffs_the_dot_lines_they_make()
    {
        var r = Encode("a\nb\rc\r\n.\n.\r", BareNewlineMode.Normalize);
        Assert.Null(r.Refusal);
        Assert.Equal("a\r\nb\r\nc\r\n..\r\n..\r\n", r.Output);
    }

    [Fact]
    public void Size_is_the_sum_of_the_chunks_and_enforced_as_they_arrive()
    {
        var body = string.Concat(Enumerable.Repeat("0123456789abcdef0123456789abcdef\r\n", 100));
        var r = Encode(body, max: 1000, piece: 256);
        Assert.Equal((552, "5.3.4"), (r.Code, r.Enhanced));
        Assert.InRange(r.Output.Length, 1000, 1000 + 256);
        Assert.Null(Encode(body, max: body.Length).Refusal);
    }

    [Fact]
    public void Every_split_gives_the_same_output()
    {
        string[] inputs = ["a\r\n.b\r\n", ".\r\n.\r\n", "x\r", "x\r\ny", "\r\n\r\n.", "a\nb\r.c", "..\r\r\n\n"];
        foreach (var mode in new[] { BareNewlineMode.Refuse, BareNewlineMode.Normalize })
            foreach (var input in inputs)
            {
                var whole = Encode(input, mode);
                for (int piece = 1; piece < input.Length; piece++)
                {
                    var split = Encode(input, mode, piece: piece);
                    Assert.Equal(whole.Refusal, split.Refusal);
                    if (whole.Refusal is null) Assert.Equal(whole.Output, split.Output);
                }
            }
    }

    [Fact]
    public void Random_messages_give_exactly_one_message_to_any_reader()
    {
        var rng = new Random(3030);
        const string alphabet = "\r\n.a";
        for (int k = 0; k < 20_000; k++)
        {
            var sb = new StringBuilder();
            int len = rng.Next(24);
            for (int i = 0; i < len; i++) sb.Append(alphabet[rng.Next(alphabet.Length)]);
            var input = sb.ToString();
            bool bare = HasBare(input);
            var strict = Encode(input, BareNewlineMode.Refuse, piece: 1 + rng.Next(5));
            Assert.Equal(bare, strict.Refusal is not null);
            if (!bare)
            {
                var expected = input.Length == 0 || input.EndsWith("\r\n", StringComparison.Ordinal) ? input : input + "\r\n";
                Assert.Equal(expected, ServerReads(strict.Output));
            }
            var norm = Encode(input, BareNewlineMode.Normalize, piece: 1 + rng.Next(5));
            Assert.Null(norm.Refusal);
            // ServerReads asserts one end, at the very end, and no bare newline before it.
            ServerReads(norm.Output);
            Assert.Equal(input.Length, norm.Size);
        }
    }

    static bool HasBare(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return true;
            if (s[i] == '\r' && (i + 1 >= s.Length || s[i + 1] != '\n')) return true;
        }
        return false;
    }
}
