using System.Text;
using Bastion.Protocols.Http.Codec;

namespace Bastion.Tests.Codec;

/// <summary>The in-place chunked decoder and the encoder: canonical output, every split, strictness.</summary>
public sealed class ChunkedTests
{
    /// <summary>Feeds the input in pieces as a relay would (keeping unconsumed bytes); returns the output or the error.</summary>
    internal static (string? Output, string? Error, int Left) Run(string wire, bool dataOnly, params int[] cuts)
    {
        var input = Encoding.Latin1.GetBytes(wire);
        var dec = new ChunkedDecoder();
        var output = new List<byte>();
        var buffer = new byte[input.Length + 16];
        int filled = 0, fed = 0;
        var points = cuts.Append(input.Length).Where(c => c <= input.Length).Distinct().Order().ToList();
        foreach (var cut in points)
        {
            Array.Copy(input, fed, buffer, filled, cut - fed);
            filled += cut - fed;
            fed = cut;
            var r = dec.Transform(buffer.AsSpan(0, filled), dataOnly, out int consumed, out int produced, out var e);
            Assert.True(produced <= consumed);
            output.AddRange(buffer.AsSpan(0, produced).ToArray());
            if (r == ParseResult.Invalid) return (null, e.Reason, 0);
            Array.Copy(buffer, consumed, buffer, 0, filled - consumed);
            filled -= consumed;
            if (r == ParseResult.Complete)
            {
                Assert.True(dec.IsDone);
                return (Encoding.Latin1.GetString(output.ToArray()), null, filled + (input.Length - fed));
            }
        }
        return (Encoding.Latin1.GetString(output.ToArray()), "incomplete", filled);
    }

    [Theory]
    [InlineData("5\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "hello")]
    [InlineData("000005\r\nhello\r\n00\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "hello")]               // leading zeros
    [InlineData("5;a=b;c=\"d;e\\\"\" ; f\r\nhello\r\n0;x\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "hello")] // extensions
    [InlineData("A\r\n0123456789\r\n3\r\nabc\r\n0\r\nTrailer: x\r\nMore: y\r\n\r\n", "a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n", "0123456789abc")]
    [InlineData("0\r\n\r\n", "0\r\n\r\n", "")]
    public void Canonical_output_at_every_split(string wire, string canonical, string data)
    {
        for (int cut = 0; cut <= wire.Length; cut++)
        {
            Assert.Equal((canonical, (string?)null, 0), Run(wire, false, cut));
            Assert.Equal((data, (string?)null, 0), Run(wire, true, cut));
        }
        var everyByte = Enumerable.Range(1, wire.Length).ToArray();
        Assert.Equal((canonical, (string?)null, 0), Run(wire, false, everyByte));
    }

    [Fact]
    public void What_follows_the_body_is_left_alone()
    {
        var (output, error, rest) = Run("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n", false);
        Assert.Null(error);
        Assert.Equal("3\r\nabc\r\n0\r\n\r\n", output);
        Assert.Equal(16, rest);
    }

    [Theory]
    [InlineData("x\r\n")]
    [InlineData("5 \r\nhello\r\n0\r\n\r\n")]
    [InlineData("5;\r\nhello\r\n0\r\n\r\n")]
    [InlineData("5;a=\r\nhello\r\n0\r\n\r\n")]
    [InlineData("5;a=\"b\r\nhello\r\n0\r\n\r\n")]
    [InlineData("5\nhello\r\n0\r\n\r\n")]
    [InlineData("5\r\nhelloX\r\n0\r\n\r\n")]
    [InlineData("5\r\nhello\rX0\r\n\r\n")]
    [InlineData("5\r\nhello\n0\r\n\r\n")]
    [InlineData("-5\r\nhello\r\n0\r\n\r\n")]
    [InlineData("0x5\r\nhello\r\n0\r\n\r\n")]
    [InlineData("1000000000000000\r\n")]                    // 16 significant hex digits
    [InlineData("5\r\nhello\r\n0\r\nBad Trailer: x\r\n\r\n")]
    [InlineData("5\r\nhello\r\n0\r\n folded\r\n\r\n")]
    [InlineData("5\r\nhello\r\n0\r\nX: \u0001\r\n\r\n")]
    public void Refuses_bad_framing_at_every_split(string wire)
    {
        for (int cut = 0; cut <= wire.Length; cut++)
        {
            var (_, error, _) = Run(wire, false, cut);
            Assert.NotNull(error);
            Assert.NotEqual("incomplete", error);
        }
    }

    [Fact]
    public void Fails_at_the_first_wrong_byte_not_at_the_line_end()
    {
        Assert.Equal("bad chunk size", Run("z", false).Error);
        Assert.Equal("missing CRLF after chunk data", Run("3\r\nabcX", false).Error);
        Assert.Equal("bad chunk size", Run("3\u0001", false).Error);
    }

    [Fact]
    public void Size_lines_are_bounded()
    {
        var longZeros = new string('0', ChunkedDecoder.MaxLine + 10) + "1\r\nx\r\n0\r\n\r\n";
        Assert.Equal("chunk framing line too long", Run(longZeros, false).Error);
        Assert.Null(Run(new string('0', 100) + "1\r\nx\r\n0\r\n\r\n", false).Error);
    }

    [Fact]
    public void Data_bytes_are_counted()
    {
        var dec = new ChunkedDecoder();
        var b = Encoding.Latin1.GetBytes("3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
        dec.Transform(b, false, out _, out _, out _);
        Assert.Equal(19, dec.DataBytes);
    }

    [Fact]
    public void Random_mutations_never_throw_and_output_is_canonical()
    {
        var rng = new Random(7);
        var samples = new[] { "5\r\nhello\r\n0\r\n\r\n", "000a;x=\"y\"\r\n0123456789\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n" };
        for (int i = 0; i < 20_000; i++)
        {
            var bytes = RequestParserTests.Mutate(Encoding.Latin1.GetBytes(samples[rng.Next(samples.Length)]), rng);
            var wire = Encoding.Latin1.GetString(bytes);
            var (output, error, _) = Run(wire, false, rng.Next(wire.Length + 1));
            if (error is not null) continue;
            Assert.Matches(@"^([0-9a-f]+\r\n[\s\S]*\r\n)*0\r\n\r\n$", output!);
            var (data, _, _) = Run(wire, true);
            Assert.Equal(data, Dechunk(output!));
        }
    }

    static string Dechunk(string canonical)
    {
        var sb = new StringBuilder();
        int i = 0;
        while (true)
        {
            int eol = canonical.IndexOf("\r\n", i, StringComparison.Ordinal);
            int n = Convert.ToInt32(canonical[i..eol], 16);
            if (n == 0) return sb.ToString();
            sb.Append(canonical, eol + 2, n);
            i = eol + 2 + n + 2;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(15)]
    [InlineData(16)]
    [InlineData(4096)]
    [InlineData(65535)]
    [InlineData(1 << 20)]
    public void Encoder_frames_in_place(int n)
    {
        var buf = new byte[ChunkedEncoder.Prefix + n + ChunkedEncoder.Suffix];
        for (int i = 0; i < n; i++) buf[ChunkedEncoder.Prefix + i] = (byte)'x';
        int start = ChunkedEncoder.Frame(buf, n);
        var chunk = Encoding.Latin1.GetString(buf, start, buf.Length - start);
        Assert.Equal($"{n:x}\r\n{new string('x', n)}\r\n", chunk);
        var (output, error, _) = Run(chunk + "0\r\n\r\n", false);
        Assert.Null(error);
        Assert.Equal(chunk + "0\r\n\r\n", output);
    }
}
