using System.Buffers;
using System.Text;
using Bastion.Protocols.Http.Codec;

namespace Bastion.Tests.Codec;

/// <summary>The codec's request head parser: valid heads, each rule of issue 14, every prefix, random mutations.</summary>
public sealed class RequestParserTests
{
    internal static (ParseResult Result, RequestHead Head, HttpError Error, int Consumed) Parse(string wire, int max = 32 * 1024) =>
        Parse(Encoding.Latin1.GetBytes(wire), max);

    internal static (ParseResult Result, RequestHead Head, HttpError Error, int Consumed) Parse(byte[] wire, int max = 32 * 1024)
    {
        var head = new RequestHead();
        var r = RequestParser.TryParse(wire, head, max, out int consumed, out var error);
        return (r, head, error, consumed);
    }

    static string Str(ReadOnlySpan<byte> b) => Encoding.Latin1.GetString(b);

    public static readonly string[] Valid =
    [
        "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
        "GET http://example.com:8080/a/b?c HTTP/1.1\r\nHost: other\r\nProxy-Connection: keep-alive\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: [::1]:8080\r\nX-Empty:\r\nX-Tab:\tv\t\r\nX-Obs: caf\u00e9\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nUpgrade: websocket\r\n\r\n",
    ];

    [Fact]
    public void Parses_request_line_fields_and_meaning()
    {
        var (r, h, _, consumed) = Parse(Valid[1]);
        Assert.Equal(ParseResult.Complete, r);
        Assert.Equal("GET", h.Method);
        Assert.Same("GET", h.Method);
        Assert.Equal(TargetForm.Absolute, h.Form);
        Assert.Equal("http", Str(h.Scheme));
        Assert.Equal("example.com:8080", Str(h.Authority));
        Assert.Equal("example.com", Str(h.Host));
        Assert.Equal(8080, h.Port);
        Assert.Equal("/a/b?c", Str(h.PathAndQuery));
        Assert.Equal(2, h.FieldCount);
        Assert.Equal(KnownHeader.Host, h[0].Id);
        Assert.Equal("other", Str(h.Value(0)));
        Assert.Equal(KnownHeader.ProxyConnection, h[1].Id);
        Assert.Equal(Valid[1].Length, consumed);
        Assert.False(h.Close);

        (r, h, _, consumed) = Parse(Valid[7]);
        Assert.Equal(ParseResult.Complete, r);
        Assert.Equal(Valid[7].Length, consumed);
        Assert.Equal(Valid[7].Length - 4, h.Bytes.Length);
        Assert.Equal("[::1]", Str(h.Host));
        Assert.Equal(8080, h.Port);
        Assert.Equal("", h.Get("x-empty"));
        Assert.Equal("v", h.Get("X-TAB"));
        Assert.Equal("caf\u00e9", h.Get("x-obs"));
        Assert.Null(h.Get("x-missing"));

        (r, h, _, _) = Parse(Valid[8]);
        Assert.True(h.Close);
        Assert.False(h.Upgrade);
        Assert.True(h[2].Listed);
        Assert.False(h[0].Listed);
    }

    [Fact]
    public void Framing_is_decided_with_the_head()
    {
        Assert.Equal(new BodyFraming(BodyKind.Length, 5), Parse(Valid[2]).Head.Framing);
        Assert.Equal(BodyFraming.Chunked, Parse(Valid[3]).Head.Framing);
        Assert.Equal(BodyFraming.Empty, Parse(Valid[0]).Head.Framing);
        Assert.Equal(BodyFraming.Empty, Parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").Head.Framing);
        Assert.Equal(new BodyFraming(BodyKind.Length, 7), Parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\nContent-Length: 007\r\n\r\n").Head.Framing);
        Assert.Equal(BodyFraming.Chunked, Parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  CHUNKED \r\n\r\n").Head.Framing);
        Assert.True(Parse("GET / HTTP/1.0\r\n\r\n").Head.Close);
        Assert.False(Parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").Head.Close);
        Assert.True(Parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n").Head.Expects100);
        Assert.True(Parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").Head.Upgrade);
    }

    [Theory]
    // Only SP and HTAB are whitespace: U+0085 and U+00A0 are value bytes (RFC 9110 §5.6.3).
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: \u0085v\u00a0\r\n\r\n", "\u0085v\u00a0")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX:\t v \t\r\n\r\n", "v")]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: a  b\r\n\r\n", "a  b")]
    public void Only_sp_and_htab_are_optional_whitespace(string wire, string value)
    {
        var (r, h, _, _) = Parse(wire);
        Assert.Equal(ParseResult.Complete, r);
        Assert.Equal(value, h.Get("X"));
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\n\r\n", 400)]                                               // no Host on 1.1
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400)]                         // two Hosts
    [InlineData("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400)]
    [InlineData("GET http://user:pw@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400)]                   // userinfo
    [InlineData("GET http://@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400)]
    [InlineData("CONNECT u@a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400)]
    [InlineData("CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400)]                                // no port
    [InlineData("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400)]
    [InlineData("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400)]
    [InlineData("GET http:/a HTTP/1.1\r\nHost: a\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \u00a0chunked\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 1\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400)]     // space before colon
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n\u0001Transfer-Encoding: chunked\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nTransfer\u0000-Encoding: chunked\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n", 400)]    // folding
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n", 400)]                              // bare LF
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r2\r\n\r\n", 400)]                         // bare CR
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: \u007f\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400)]
    [InlineData("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400)]
    [InlineData("G\u00e9T / HTTP/1.1\r\nHost: a\r\n\r\n", 400)]
    [InlineData("GET /\u00e9 HTTP/1.1\r\nHost: a\r\n\r\n", 400)]
    [InlineData("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505)]
    [InlineData("GET / http/1.1\r\nHost: a\r\n\r\n", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n", 400)]
    public void Refuses(string wire, int status)
    {
        var (r, _, e, _) = Parse(wire);
        Assert.Equal(ParseResult.Invalid, r);
        Assert.Equal(status, e.Status);
        Assert.Equal(ReferenceModel.Request(Encoding.Latin1.GetBytes(wire)).Status, e.Status);
    }

    [Fact]
    public void Absolute_form_target_decides_the_authority_over_host()
    {
        var (_, h, _, _) = Parse("GET https://Target.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n");
        Assert.Equal("Target.example", Str(h.Authority));
        Assert.Equal(-1, h.Port);
        Assert.Equal("https", Str(h.Scheme));
        (_, h, _, _) = Parse("GET http://a.example?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal("?x=1", Str(h.PathAndQuery));
        (_, h, _, _) = Parse("GET http://a.example HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal("/", Str(h.PathAndQuery));
    }

    [Fact]
    public void Too_large_and_too_many()
    {
        var big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + new string('a', 2000) + "\r\n\r\n";
        Assert.Equal(431, Parse(big, max: 1024).Error.Status);
        Assert.Equal(431, Parse(big[..1500], max: 1024).Error.Status);
        var many = "GET / HTTP/1.1\r\nHost: a\r\n" + string.Concat(Enumerable.Range(0, 300).Select(i => $"X{i}: v\r\n")) + "\r\n";
        Assert.Equal(431, Parse(many, max: 64 * 1024).Error.Status);
    }

    [Fact]
    public void Every_prefix_of_valid_input_needs_more_and_the_whole_parses()
    {
        foreach (var wire in Valid)
        {
            var bytes = Encoding.Latin1.GetBytes(wire);
            int headEnd = Parse(bytes).Consumed;
            Assert.True(headEnd > 0, wire);
            for (int n = 0; n < headEnd; n++)
            {
                var (r, _, e, _) = Parse(bytes[..n]);
                Assert.True(r == ParseResult.NeedMore, $"prefix {n} of {Escape(wire)}: {r} {e.Reason}");
            }
            for (int n = headEnd; n <= bytes.Length; n++)
                Assert.Equal(headEnd, Parse(bytes[..n]).Consumed);
        }
    }

    [Fact]
    public void Multi_segment_sequences_parse_like_one_span()
    {
        foreach (var wire in Valid)
        {
            var bytes = Encoding.Latin1.GetBytes(wire);
            for (int split = 0; split <= bytes.Length; split++)
            {
                var seq = Segments.Of(bytes[..split], bytes[split..]);
                var head = new RequestHead();
                var r = RequestParser.TryParse(seq, head, 32 * 1024, out var consumed, out _);
                Assert.Equal(ParseResult.Complete, r);
                Assert.Equal(Parse(bytes).Consumed, seq.Slice(0, consumed).Length);
                Assert.Equal(Parse(bytes).Head.Bytes.ToArray(), head.Bytes.ToArray());
            }
        }
    }

    [Fact]
    public void Random_mutations_agree_with_the_reference_model_and_never_throw()
    {
        var rng = new Random(14);
        int compared = 0;
        for (int iter = 0; iter < 30_000; iter++)
        {
            var bytes = Mutate(Encoding.Latin1.GetBytes(Valid[rng.Next(Valid.Length)]), rng);
            var (r, h, e, consumed) = Parse(bytes, max: 64 * 1024);
            var model = ReferenceModel.Request(bytes);
            if (model.NeedMore)
            {
                Assert.True(r != ParseResult.Complete, $"complete head where the model sees none: {Escape(bytes)}");
                continue;
            }
            compared++;
            if (model.Status != 0)
            {
                Assert.True(r == ParseResult.Invalid && e.Status == model.Status, $"{Escape(bytes)}: codec {r} {e.Status} {e.Reason}, model {model}");
                continue;
            }
            Assert.True(r == ParseResult.Complete, $"{Escape(bytes)}: codec {r} {e.Status} {e.Reason}, model {model}");
            Assert.Equal(model.Kind, h.Framing.Kind);
            Assert.Equal(model.Length, h.Framing.Length);
            Assert.True(consumed <= bytes.Length);
        }
        Assert.True(compared > 10_000, $"only {compared} mutations had a complete head");
    }

    internal static byte[] Mutate(byte[] input, Random rng)
    {
        var list = new List<byte>(input);
        int edits = 1 + rng.Next(3);
        for (int k = 0; k < edits && list.Count > 0; k++)
        {
            int at = rng.Next(list.Count);
            byte b = rng.Next(4) switch
            {
                0 => (byte)rng.Next(256),
                1 => "\r\n :\t,;\"\\@/?#"u8[rng.Next(13)],
                2 => (byte)rng.Next(0x20, 0x7f),
                _ => "0aZ-_."u8[rng.Next(6)],
            };
            switch (rng.Next(3))
            {
                case 0: list.Insert(at, b); break;
                case 1: list[at] = b; break;
                default: list.RemoveAt(at); break;
            }
        }
        return [.. list];
    }

    internal static string Escape(byte[] b) => Escape(Encoding.Latin1.GetString(b));

    internal static string Escape(string s)
    {
        var sb = new StringBuilder();
        foreach (var c in s)
            sb.Append(c is >= ' ' and < '\x7f' ? c.ToString() : $"\\x{(int)c:x2}");
        return sb.ToString();
    }
}

/// <summary>A ReadOnlySequence made of the given pieces, each its own segment.</summary>
public static class Segments
{
    sealed class Seg : ReadOnlySequenceSegment<byte>
    {
        public Seg(ReadOnlyMemory<byte> m, long index)
        {
            Memory = m;
            RunningIndex = index;
        }

        public Seg Add(ReadOnlyMemory<byte> m)
        {
            var next = new Seg(m, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    public static ReadOnlySequence<byte> Of(params byte[][] parts)
    {
        var first = new Seg(parts[0], 0);
        var last = first;
        for (int i = 1; i < parts.Length; i++) last = last.Add(parts[i]);
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }
}
