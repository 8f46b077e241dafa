using System.Buffers;
using System.Text;
using Bastion.Protocols.Smtp;

namespace Bastion.Tests.Smtp;

/// <summary>The DATA stream: the one end of data, smuggling variants, bare newlines refused or normalised, sizes, any split.</summary>
public class DataScannerTests
{
    sealed record Run(DataStatus Status, int Consumed, string Output, string? Refusal, int Code, long Size);

    static Run Scan(string input, BareNewlineMode mode = BareNewlineMode.Refuse, long max = long.MaxValue, int chunk = int.MaxValue)
    {
        var bytes = Encoding.Latin1.GetBytes(input);
        var s = new DataScanner(mode, max);
        s.Reset();
        var output = new ArrayBufferWriter<byte>();
        int total = 0;
        var status = DataStatus.NeedMore;
        while (total < bytes.Length)
        {
            int n = Math.Min(chunk, bytes.Length - total);
            status = s.Feed(bytes.AsSpan(total, n), output, out var used);
            total += used;
            if (status == DataStatus.End) break;
            Assert.Equal(n, used);
        }
        return new Run(status, total, Encoding.Latin1.GetString(output.WrittenSpan), s.Refusal, s.RefusalCode, s.Size);
    }

    [Fact]
    public void Dot_stuffed_lines_are_relayed_as_received_and_the_terminator_is_held()
    {
        const string body = "Subject: t\r\n\r\n..leading dot\r\n.\tx\r\nlast\r\n";
        var r = Scan(body + ".\r\nMAIL FROM:<a@b>\r\n");
        Assert.Equal(DataStatus.End, r.Status);
        Assert.Equal(body.Length + 3, r.Consumed);
        Assert.Equal(body, r.Output);
        Assert.Null(r.Refusal);
        Assert.Equal(body.Length - 1, r.Size);
    }

    [Fact]
    public void An_empty_message_ends_at_once()
    {
        var r = Scan(".\r\n");
        Assert.Equal((DataStatus.End, 3, ""), (r.Status, r.Consumed, r.Output));
    }

    public static readonly TheoryData<string> Smuggling = new()
    {
        "\n.\n", "\r.\r", "\r.\n", "\n.\r", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r", "\r\n.\rX\r\n", "\r\n.\r\r\n",
        "\n\n.\n\n", "\r\r.\r\r", "\r\n\n.\n\r\n",
    };

    static string Smuggle(string end) =>
        "Subject: one\r\n\r\nhello" + end + "MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\n\r\nforged\r\n";

    [Theory]
    [MemberData(nameof(Smuggling))]
    public void Smuggling_variants_are_not_an_end_and_are_refused(string end)
    {
        var input = Smuggle(end) + ".\r\nQUIT\r\n";
        var r = Scan(input);
        Assert.Equal(DataStatus.End, r.Status);
        // The only end is the real CRLF.CRLF: everything up to it belongs to the (refused) message.
        Assert.Equal(input.Length - "QUIT\r\n".Length, r.Consumed);
        Assert.Equal(554, r.Code);
        Assert.Contains("bare", r.Refusal);
    }

    [Theory]
    [MemberData(nameof(Smuggling))]
    public void Smuggling_variants_normalised_leave_one_end_for_any_reader(string end)
    {
        var input = Smuggle(end) + ".\r\nQUIT\r\n";
        var r = Scan(input, BareNewlineMode.Normalize);
        Assert.Equal(DataStatus.End, r.Status);
        Assert.Equal(input.Length - "QUIT\r\n".Length, r.Consumed);
        Assert.Null(r.Refusal);
        AssertClean(r.Output);
    }

    /// <summary>
    /// What the server gets (output + ".\r\n") has no bare CR or LF and no earlier end, so a strict and a lenient
    /// server both see exactly one message.
    /// </summary>
    static void AssertClean(string output)
    {
        for (int i = 0; i < output.Length; i++)
        {
            if (output[i] == '\n') Assert.True(i > 0 && output[i - 1] == '\r', $"bare LF at {i} in {Show(output)}");
            if (output[i] == '\r') Assert.True(i + 1 < output.Length && output[i + 1] == '\n', $"bare CR at {i} in {Show(output)}");
        }
        Assert.DoesNotContain("\r\n.\r\n", output);
        Assert.False(output.StartsWith(".\r\n", StringComparison.Ordinal), Show(output));
        Assert.True(output.Length == 0 || output.EndsWith("\r\n", StringComparison.Ordinal), Show(output));
    }

    static string Show(string s) => s.Replace("\r", "\\r").Replace("\n", "\\n");

    [Fact]
    public void Normalising_rewrites_bare_newlines_as_crlf()
    {
        var r = Scan("a\nb\rc\r\n.\r\n", BareNewlineMode.Normalize);
        Assert.Equal("a\r\nb\r\nc\r\n", r.Output);
        // A "." line after a bare newline is stuffed, and so is one ended by CRLF that began after one.
        r = Scan("\n.\n.\r\n.\r\n", BareNewlineMode.Normalize);
        Assert.Equal((DataStatus.End, "\r\n..\r\n..\r\n"), (r.Status, r.Output));
    }

    [Fact]
    public void Size_is_enforced_while_streaming()
    {
        var body = string.Concat(Enumerable.Repeat("0123456789abcdef0123456789abcdef\r\n", 100));
        var r = Scan(body + ".\r\n", max: 1000, chunk: 256);
        Assert.Equal(DataStatus.End, r.Status);
        Assert.Equal(552, r.Code);
        // Output stops once the limit is passed: never more than one read beyond it.
        Assert.InRange(r.Output.Length, 1000, 1000 + 256);
        r = Scan(body + ".\r\n", max: body.Length);
        Assert.Null(r.Refusal);
        Assert.Equal(body.Length, r.Size);
    }

    [Fact]
    public void Every_split_gives_the_same_result()
    {
        string[] inputs =
        [
            "a\r\n..b\r\n.\r\n", "\r\n.\r\n", Smuggle("\n.\n") + ".\r\n", Smuggle("\r\n.\rX") + ".\r\n", "x\r\r\n.\r\n",
        ];
        foreach (var mode in new[] { BareNewlineMode.Refuse, BareNewlineMode.Normalize })
            foreach (var input in inputs)
            {
                var whole = Scan(input, mode);
                // Once a message is refused, what was written before is thrown away with the server session.
                var bytewise = Scan(input, mode, chunk: 1);
                Assert.Equal(whole with { Output = "" }, bytewise with { Output = "" });
                if (whole.Refusal is null) Assert.Equal(whole.Output, bytewise.Output);
                var bytes = Encoding.Latin1.GetBytes(input);
                for (int cut = 1; cut < bytes.Length; cut++)
                {
                    var s = new DataScanner(mode, long.MaxValue);
                    var output = new ArrayBufferWriter<byte>();
                    var st = s.Feed(bytes.AsSpan(0, cut), output, out var used);
                    if (st != DataStatus.End) st = s.Feed(bytes.AsSpan(cut), output, out _);
                    Assert.Equal(DataStatus.End, st);
                    Assert.Equal(whole.Refusal, s.Refusal);
                    if (whole.Refusal is null) Assert.Equal(whole.Output, Encoding.Latin1.GetString(output.WrittenSpan));
                }
            }
    }

    [Fact]
    public void Random_mutations_keep_one_end_and_clean_output()
    {
        var rng = new Random(2023);
        const string alphabet = "\r\n.a";
        for (int k = 0; k < 20_000; k++)
        {
            var sb = new StringBuilder();
            int len = rng.Next(24);
            for (int i = 0; i < len; i++) sb.Append(alphabet[rng.Next(alphabet.Length)]);
            var input = sb + "\r\n.\r\n";
            // The reference: the first CRLF "." CRLF, with the start of data counting as a line start.
            int refEnd = ("\r\n" + input).IndexOf("\r\n.\r\n", StringComparison.Ordinal) - 2 + 5;
            bool bare = HasBare(input[..refEnd]);
            var strict = Scan(input, BareNewlineMode.Refuse, chunk: 1 + rng.Next(4));
            Assert.Equal(DataStatus.End, strict.Status);
            Assert.Equal(refEnd, strict.Consumed);
            Assert.Equal(bare, strict.Refusal is not null);
            if (!bare) Assert.Equal(input[..(refEnd - 3)], strict.Output);
            var norm = Scan(input, BareNewlineMode.Normalize, chunk: 1 + rng.Next(4));
            Assert.Equal(refEnd, norm.Consumed);
            Assert.Null(norm.Refusal);
            AssertClean(norm.Output);
            // What the server reads back from the normalised output is one message ending where it should.
            var again = Scan(norm.Output + ".\r\n");
            Assert.Equal((DataStatus.End, norm.Output.Length + 3, (string?)null), (again.Status, again.Consumed, again.Refusal));
        }
    }

    /// <summary>
    /// Long messages (plain text is skipped a vector at a time): random mutations of ordinary lines, read whole, in
    /// random pieces and byte by byte (pieces shorter than a vector: the state machine alone), give one answer.
    /// </summary>
    [Fact]
    public void Long_messages_with_mutations_give_the_same_result_whole_and_in_pieces()
    {
        var rng = new Random(11);
        const string alphabet = "\r\n.a";
        for (int k = 0; k < 3_000; k++)
        {
            var sb = new StringBuilder();
            int lines = 1 + rng.Next(12);
            for (int l = 0; l < lines; l++)
            {
                if (rng.Next(4) == 0) sb.Append("..");
                sb.Append('x', rng.Next(70)).Append("\r\n");
            }
            var chars = sb.ToString().ToCharArray();
            for (int m = rng.Next(4); m > 0 && chars.Length > 0; m--) chars[rng.Next(chars.Length)] = alphabet[rng.Next(alphabet.Length)];
            var input = new string(chars) + "\r\n.\r\n" + "MAIL FROM:<a@b>\r\n";
            int refEnd = ("\r\n" + input).IndexOf("\r\n.\r\n", StringComparison.Ordinal) - 2 + 5;
            bool bare = HasBare(input[..refEnd]);
            foreach (var mode in new[] { BareNewlineMode.Refuse, BareNewlineMode.Normalize })
            {
                var whole = Scan(input, mode);
                Assert.Equal(DataStatus.End, whole.Status);
                Assert.Equal(refEnd, whole.Consumed);
                var bytewise = Scan(input, mode, chunk: 1);
                var pieces = Scan(input, mode, chunk: 1 + rng.Next(100));
                Assert.Equal(whole with { Output = "" }, bytewise with { Output = "" });
                Assert.Equal(whole with { Output = "" }, pieces with { Output = "" });
                if (mode == BareNewlineMode.Refuse)
                {
                    Assert.Equal(bare, whole.Refusal is not null);
                    if (!bare) Assert.Equal(input[..(refEnd - 3)], whole.Output);
                }
                else
                {
                    Assert.Null(whole.Refusal);
                    AssertClean(whole.Output);
                    Assert.Equal(bytewise.Output, whole.Output);
                    Assert.Equal(pieces.Output, whole.Output);
                }
            }
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
