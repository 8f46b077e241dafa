using System.Text;
using Bastion.Protocols.Http.Codec;

namespace Bastion.Tests.Codec;

/// <summary>The codec's response head parser: what upstream servers may send, and what makes a 502.</summary>
public sealed class ResponseParserTests
{
    internal static (ParseResult Result, ResponseHead Head, HttpError Error, int Consumed) Parse(string wire, bool head = false, bool connect = false)
    {
        var h = new ResponseHead();
        var bytes = Encoding.Latin1.GetBytes(wire);
        var r = ResponseParser.TryParse(bytes, h, 32 * 1024, head, connect, out int consumed, out var error);
        return (r, h, error, consumed);
    }

    public static readonly string[] Valid =
    [
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nuntil close",
        "HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: \"x\"\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 404 Caf\u00e9 \t introuvable\r\nContent-Length: 2, 2\r\nConnection: close\r\n\r\nno",
    ];

    [Fact]
    public void Parses_status_line_fields_and_framing()
    {
        var (r, h, _, consumed) = Parse(Valid[0]);
        Assert.Equal(ParseResult.Complete, r);
        Assert.Equal(200, h.Status);
        Assert.Equal("OK", Encoding.Latin1.GetString(h.Reason));
        Assert.Equal(new BodyFraming(BodyKind.Length, 5), h.Framing);
        Assert.Equal(Valid[0].Length - 5, consumed);
        Assert.Equal(BodyFraming.Chunked, Parse(Valid[1]).Head.Framing);
        Assert.Equal(BodyFraming.UntilClose, Parse(Valid[2]).Head.Framing);
        Assert.True(Parse(Valid[2]).Head.Close);
        Assert.Equal(BodyFraming.Empty, Parse(Valid[3]).Head.Framing);
        Assert.Equal(BodyFraming.Empty, Parse(Valid[4]).Head.Framing);
        Assert.True(Parse(Valid[5]).Head.IsInterim);
        Assert.True(Parse(Valid[6]).Head.IsInterim);
        Assert.Equal("", Encoding.Latin1.GetString(Parse(Valid[7]).Head.Reason));
        var (_, h8, _, _) = Parse(Valid[8]);
        Assert.Equal(404, h8.Status);
        Assert.True(h8.Close);
        Assert.Equal(new BodyFraming(BodyKind.Length, 2), h8.Framing);
        // HEAD: the announced length describes a GET; no body follows.
        Assert.Equal(BodyFraming.Empty, Parse(Valid[0], head: true).Head.Framing);
        Assert.Equal(BodyFraming.Empty, Parse(Valid[1], head: true).Head.Framing);
        Assert.Equal(BodyFraming.Empty, Parse("HTTP/1.1 200 Connection established\r\n\r\n", connect: true).Head.Framing);
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")]     // CL + TE
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")]              // conflicting CLs
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")]
    [InlineData("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n")]                                     // obs-fold
    [InlineData("HTTP/1.1 200 OK\nX: a\r\n\r\n")]                                                  // bare LF
    [InlineData("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n")]                                             // bare CR
    [InlineData("HTTP/1.1 200 OK\r\nX : a\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nX\u0001: a\r\n\r\n")]
    [InlineData("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n")]                           // body on 204
    [InlineData("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n")]
    [InlineData("HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\n")]
    [InlineData("HTTP/2 200 OK\r\n\r\n")]                                                          // invalid status lines
    [InlineData("HTTP/1.1 20 OK\r\n\r\n")]
    [InlineData("HTTP/1.1 2000 OK\r\n\r\n")]
    [InlineData("HTTP/1.1 099 Low\r\n\r\n")]
    [InlineData("HTTP/1.1 600 High\r\n\r\n")]
    [InlineData("HTTP/1.1  200 OK\r\n\r\n")]
    [InlineData("http/1.1 200 OK\r\n\r\n")]
    [InlineData("HTTP/1.1 200 O\u0000K\r\n\r\n")]
    [InlineData("HTTP/1.1 200OK\r\n\r\n")]
    [InlineData("ICY 200 OK\r\n\r\n")]
    public void Refuses_with_502(string wire)
    {
        var (r, _, e, _) = Parse(wire);
        Assert.Equal(ParseResult.Invalid, r);
        Assert.Equal(502, e.Status);
    }

    [Fact]
    public void Every_prefix_of_valid_input_needs_more()
    {
        foreach (var wire in Valid)
        {
            int headEnd = Parse(wire).Consumed;
            Assert.True(headEnd > 0, wire);
            for (int n = 0; n < headEnd; n++)
            {
                var (r, _, e, _) = Parse(wire[..n]);
                Assert.True(r == ParseResult.NeedMore, $"prefix {n} of {RequestParserTests.Escape(wire)}: {r} {e.Reason}");
            }
        }
    }

    [Fact]
    public void Random_mutations_never_throw_and_accepted_heads_are_sound()
    {
        var rng = new Random(502);
        int complete = 0;
        for (int i = 0; i < 30_000; i++)
        {
            var bytes = RequestParserTests.Mutate(Encoding.Latin1.GetBytes(Valid[rng.Next(Valid.Length)]), rng);
            var h = new ResponseHead();
            var r = ResponseParser.TryParse(bytes, h, 32 * 1024, false, false, out int consumed, out var e);
            if (r == ParseResult.Invalid) { Assert.Equal(502, e.Status); continue; }
            if (r != ParseResult.Complete) continue;
            complete++;
            // Whatever was accepted is a clean head: CRLF lines, token names, no CTL in values, one framing.
            var text = Encoding.Latin1.GetString(bytes, 0, consumed);
            Assert.EndsWith("\r\n\r\n", text);
            var lines = text[..^4].Split("\r\n");
            Assert.Matches(@"^HTTP/1\.[01] [1-5][0-9][0-9]( [^\x00-\x08\x0a-\x1f\x7f]*)?$", lines[0]);
            foreach (var line in lines.Skip(1))
                Assert.Matches(@"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*$", line);
            int te = lines.Count(l => l.StartsWith("transfer-encoding:", StringComparison.OrdinalIgnoreCase));
            int cl = lines.Count(l => l.StartsWith("content-length:", StringComparison.OrdinalIgnoreCase));
            Assert.False(te > 0 && cl > 0, text);
            if (h.Framing.Kind == BodyKind.Chunked) Assert.Equal(1, te);
        }
        Assert.True(complete > 5_000, $"{complete} complete");
    }
}
