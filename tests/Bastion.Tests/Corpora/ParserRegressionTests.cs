using System.Text;
using Bastion.Protocols.Http.Codec;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Corpora;

/// <summary>Regressions for what the llhttp corpus found in the head parser, the body decoder and forwarding.</summary>
public sealed class ParserRegressionTests
{
    static (ParseResult Status, HttpError Error) Parse(string head)
    {
        var status = RequestParser.TryParse(Encoding.Latin1.GetBytes(head), new RequestHead(), 32 * 1024, out _, out var error);
        return (status, error);
    }

    [Theory]
    [InlineData("POST / HTTP/1.1\nTransfer-Encoding: chunked\n")]           // llhttp invalid.md "Only LFs present"
    [InlineData("GET / HTTP/1.1\rLine: 1")]                                   // sample.md "No LF after CR"
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n\rZGET /evil: HTTP/1.1\r\n")]   // invalid.md "Headers separated by dummy characters"
    [InlineData("PUT /url HTTP/1.1\r\nContent-Length: 3\r\n\rabc")]          // content-length.md "Missing CRLF-CRLF before body"
    [InlineData("GET / HTTP/1.1\r\nLine1:   abc\n\tdef\n")]                   // sample.md "Line folding in header value with LF"
    public void Bare_cr_or_lf_fails_before_the_head_is_complete(string partial)
    {
        var (status, error) = Parse(partial);
        Assert.Equal(ParseResult.Invalid, status);
        Assert.Equal(400, error.Status);
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\n Host: foo", 400)]                  // invalid.md "Invalid space after start line"
    [InlineData("GET / HTTP/5.6\r\nHost: a\r\n", 505)]
    [InlineData("GET / HTTP/1.1\r\nFo@: Failure\r\nHost", 400)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\tfolded", 400)]
    public void Bad_lines_fail_as_soon_as_they_are_seen(string partial, int expected)
    {
        var (status, error) = Parse(partial);
        Assert.Equal(ParseResult.Invalid, status);
        Assert.Equal(expected, error.Status);
    }

    [Theory]
    [InlineData("GET http://a/ HTTP/1.1\r\nHost: a\r\nX-Long: abc")]
    [InlineData("GET http://a/ HTTP/1.1\r\nHost: a\r")]
    [InlineData("GET http://a/ HTT")]
    [InlineData("\r\n\r\nGET http://a/ HTTP/1.1\r\n")]
    public void Valid_partial_heads_still_wait_for_more(string partial) =>
        Assert.Equal(ParseResult.NeedMore, Parse(partial).Status);

    /// <summary>The codec's chunked decoder over the whole input (complete) or a prefix the client is still sending.</summary>
    static Task<(string? Error, int Length)> ReadChunked(string wire, bool complete = true)
    {
        var bytes = Encoding.Latin1.GetBytes(wire);
        var dec = new ChunkedDecoder();
        var r = dec.Transform(bytes, dataOnly: true, out _, out int produced, out var error);
        if (r == ParseResult.Invalid) return Task.FromResult<(string?, int)>((error.Reason, produced));
        if (r == ParseResult.NeedMore && complete) return Task.FromResult<(string?, int)>(("request body ended early", produced));
        return Task.FromResult<(string?, int)>((null, produced));
    }

    [Theory]
    [InlineData("2;\r\naa\r\n0\r\n\r\n")]                                        // transfer-encoding.md "No extension after semicolon"
    [InlineData("5;ilovew3=\"abc\";somuchlove=\"def; ghi\r\nhello\r\n0\r\n\r\n")] // "Unbalanced chunk extensions quoting"
    [InlineData("5;a=\r\nhello\r\n0\r\n\r\n")]
    [InlineData("5;=b\r\nhello\r\n0\r\n\r\n")]
    [InlineData("5;a b\r\nhello\r\n0\r\n\r\n")]
    [InlineData("a \r\n0123456789\r\n0\r\n\r\n")]
    public async Task Malformed_chunk_extensions_are_refused(string wire)
    {
        var (error, _) = await ReadChunked(wire);
        Assert.NotNull(error);
    }

    [Theory]
    [InlineData("5;ilovew3=\"I \\\"love\\\"; \\\\extensions\\\\\";somuchlove=\"aretheseparametersfor\";blah;foo=bar\r\nhello\r\n0\r\n\r\n")]
    [InlineData("5 ; a = b ;c\r\nhello\r\n0\r\n\r\n")]
    [InlineData("5;ilovew3;somuchlove=aretheseparametersfor;another=withvalue\r\nhello\r\n0\r\n\r\n")]
    public async Task Valid_chunk_extensions_are_accepted(string wire)
    {
        var (error, length) = await ReadChunked(wire);
        Assert.Null(error);
        Assert.Equal(5, length);
    }

    [Theory]
    [InlineData("5\r\nABCDE0")]      // transfer-encoding.md "Chunk data not terminated by CRLF"
    [InlineData("5\r\nABCDE\rX")]
    [InlineData("5\r\nABCDE\r\nZ")]  // the next size line cannot start with a non-hex byte
    public async Task Bad_bytes_after_chunk_data_fail_without_waiting_for_more(string wire)
    {
        // The client keeps the connection open: the decoder must not wait for a CRLF that settles nothing.
        var (error, _) = await ReadChunked(wire, complete: false);
        Assert.NotNull(error);
    }

    [Fact]
    public async Task Obs_text_in_a_header_value_reaches_the_origin_byte_for_byte()
    {
        // sample.md "Extended Characters" and "255 ASCII in header value" were 502s: HttpClient refuses non-ASCII
        // header values unless told their encoding. The origin (Kestrel) reads values as UTF-8, as the corpus sends them.
        await using var origin = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync(LlhttpCorpusTests.GatewayYaml);
        var r = await Proc.CurlAsync("-sS", "-x", gw.Url("web"), "-H", "Test: D\u00fcsseldorf \u00ffx", $"{origin.Url}/echo");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("D\u00fcsseldorf \u00ffx", Json.Parse(r.Stdout).GetProperty("headers").GetProperty("Test").GetString());
    }
}
