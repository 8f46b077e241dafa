using System.Net.Security;
using System.Security.Cryptography;
using System.Text;
using Bastion.Protocols.Http.Codec;
using Bastion.Protocols.Http.Engine;
using Bastion.Protocols.Http.Io;
using Bastion.Protocols.Http.Upstream;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Http1;

/// <summary>The own upstream HTTP/1.1 client against real and scripted origins: pooling, retries, 1xx, framing, TLS.</summary>
public sealed class UpstreamClientTests
{
    static readonly UpstreamTimeouts Timeouts = new(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10));

    sealed record Got(UpstreamResult Result, int Status, string Body, PumpResult Pump);

    static async Task<Got> Exchange(UpstreamPool pool, string method, string path, Peer? client = null, BodyFraming framing = default,
        string extraHeaders = "", BodyOut mode = BodyOut.AsFramed, Func<ResponseHead, ValueTask>? interim = null, UpstreamTimeouts? timeouts = null)
    {
        var w = new HeadWriter();
        w.Append($"{method} {path} HTTP/1.1\r\nHost: {pool.Label}\r\n{extraHeaders}").Framing(framing).CrLf();
        var r = await UpstreamExchange.SendAsync(pool, w.WrittenMemory, client, framing, long.MaxValue, method == "HEAD", false,
            timeouts ?? Timeouts, interim, 64 * 1024, default);
        if (r.End != UpstreamEnd.Response) return new(r, 0, "", default);
        var conn = r.Connection!;
        var sink = new MemoryStream();
        var p = await BodyPump.CopyAsync(conn.Peer, Duplex.Over(sink, null), conn.Response.Framing, mode, long.MaxValue, conn, Timeouts.Idle, errorStatus: 502);
        if (r.RequestBody is { } rb) await rb;
        if (p.Ok && !conn.Response.Close) await pool.ReturnAsync(conn);
        else await conn.CloseAsync();
        return new(r, conn.Response.Status, Encoding.Latin1.GetString(sink.ToArray()), p);
    }

    static Peer ClientWith(string bytes) => new(Duplex.Over(new MemoryStream(Encoding.Latin1.GetBytes(bytes)), null));

    [Fact]
    public async Task Keep_alive_reuses_one_connection()
    {
        await using var origin = await TestOrigin.StartAsync();
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        for (int i = 0; i < 20; i++)
        {
            var g = await Exchange(pool, "GET", "/100b");
            Assert.Equal(200, g.Status);
            Assert.Equal(new string('x', 99) + "\n", g.Body);
        }
        Assert.Equal(1, pool.Opened);
        Assert.Equal(1, pool.Idle);
        Assert.Equal(20, origin.Requests);
        await pool.PruneAsync(all: true);
        Assert.Equal(0, pool.Open);
    }

    [Fact]
    public async Task A_pooled_connection_the_server_closed_is_replaced_once_when_nothing_was_sent()
    {
        // One answer per connection, then the server closes (a keep-alive timeout on its side).
        await using var origin = ScriptedOrigin.Answering("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", closeAfter: true);
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        var first = await Exchange(pool, "GET", "/a");
        Assert.Equal(200, first.Status);
        Assert.Equal(1, pool.Idle);
        // The close may not have arrived yet; either way the request must succeed, on a second connection.
        var second = await Exchange(pool, "GET", "/b");
        Assert.Equal(200, second.Status);
        Assert.Equal("ok", second.Body);
        Assert.Equal(2, origin.Connections);
        Assert.True(second.Result.Attempts <= 2);
    }

    [Fact]
    public async Task A_request_with_a_body_is_never_sent_twice()
    {
        var closed = new TaskCompletionSource();
        await using var origin = ScriptedOrigin.Start(async c =>
        {
            await c.ReadRequestAsync();
            await c.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            c.Close();
            closed.TrySetResult();
        });
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        Assert.Equal(200, (await Exchange(pool, "GET", "/a")).Status);
        await closed.Task;
        var client = ClientWith("hello");
        var g = await Exchange(pool, "POST", "/b", client, new BodyFraming(BodyKind.Length, 5));
        Assert.NotEqual(UpstreamEnd.Response, g.Result.End);
        Assert.Equal(1, g.Result.Attempts);
        Assert.Equal(1, origin.Connections);
    }

    [Fact]
    public async Task Interim_responses_103_go_to_the_callback_and_100_is_dropped()
    {
        await using var origin = ScriptedOrigin.Answering(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        var seen = new List<string>();
        var g = await Exchange(pool, "GET", "/", interim: h =>
        {
            seen.Add($"{h.Status} {h.Get("Link")}");
            return ValueTask.CompletedTask;
        });
        Assert.Equal(200, g.Status);
        Assert.Equal("ok", g.Body);
        Assert.Equal(["103 </s.css>; rel=preload"], seen);
    }

    [Fact]
    public async Task Connection_close_and_close_delimited_responses_end_the_connection()
    {
        await using var origin = ScriptedOrigin.Start(async c =>
        {
            await c.ReadRequestAsync();
            await c.WriteAsync("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ");
            await c.WriteAsync("world");
            c.Close();
        });
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        var g = await Exchange(pool, "GET", "/", mode: BodyOut.Chunked);
        Assert.Equal(200, g.Status);
        Assert.True(g.Pump.Ok);
        Assert.Matches("^(6\r\nhello \r\n5\r\nworld\r\n|b\r\nhello world\r\n)0\r\n\r\n$", g.Body);
        Assert.Equal(0, pool.Open);

        await using var closing = ScriptedOrigin.Answering("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
        var pool2 = new UpstreamPool("127.0.0.1", closing.Port, null, TimeSpan.FromSeconds(5));
        Assert.Equal("ok", (await Exchange(pool2, "GET", "/")).Body);
        Assert.Equal(0, pool2.Open);
    }

    [Fact]
    public async Task Head_204_and_304_have_no_body_and_a_body_after_them_is_refused()
    {
        await using var origin = ScriptedOrigin.Start(async c =>
        {
            while (await c.ReadRequestAsync() is { } head)
            {
                if (head.StartsWith("HEAD", StringComparison.Ordinal)) await c.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
                else if (head.Contains("/204", StringComparison.Ordinal)) await c.WriteAsync("HTTP/1.1 204 No Content\r\n\r\n");
                else if (head.Contains("/304", StringComparison.Ordinal)) await c.WriteAsync("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
                else if (head.Contains("/bad", StringComparison.Ordinal)) await c.WriteAsync("HTTP/1.1 204 No Content\r\n\r\nsmuggled");
            }
        });
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        var head = await Exchange(pool, "HEAD", "/");
        Assert.Equal(200, head.Status);
        Assert.Equal("", head.Body);
        Assert.Equal(204, (await Exchange(pool, "GET", "/204")).Status);
        Assert.Equal(304, (await Exchange(pool, "GET", "/304")).Status);
        Assert.Equal(1, pool.Opened);
        var bad = await Exchange(pool, "GET", "/bad");
        Assert.Equal(UpstreamEnd.InvalidResponse, bad.Result.End);
        Assert.Contains("no body", bad.Result.Error);
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok")]
    [InlineData("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok")]
    [InlineData("HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok")]
    [InlineData("HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok")]
    public async Task Ambiguous_response_heads_are_invalid(string response)
    {
        await using var origin = ScriptedOrigin.Answering(response);
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        var g = await Exchange(pool, "GET", "/");
        Assert.Equal(UpstreamEnd.InvalidResponse, g.Result.End);
        Assert.Equal(0, pool.Open);
    }

    [Fact]
    public async Task Bad_chunk_sizes_in_a_response_body_fail_the_transfer()
    {
        await using var origin = ScriptedOrigin.Answering("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n");
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        var g = await Exchange(pool, "GET", "/");
        Assert.Equal(200, g.Status);
        Assert.Equal(PumpEnd.SourceInvalid, g.Pump.End);
        Assert.Equal(502, g.Pump.Error.Status);
        Assert.Equal(0, pool.Open);
    }

    [Fact]
    public async Task A_chunked_request_body_streams_canonically_to_the_origin()
    {
        await using var origin = await TestOrigin.StartAsync();
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        var data = string.Concat(Enumerable.Range(0, 5000).Select(i => (char)('a' + i % 26)));
        var wire = new StringBuilder();
        for (int i = 0; i < data.Length; i += 777)
        {
            var piece = data.Substring(i, Math.Min(777, data.Length - i));
            wire.Append($"000{piece.Length:X};ext=\"v\"\r\n{piece}\r\n");
        }
        wire.Append("0\r\nTrailer: x\r\n\r\nNEXT");
        var client = ClientWith(wire.ToString());
        var g = await Exchange(pool, "POST", "/sha256", client, BodyFraming.Chunked, mode: BodyOut.DataOnly);
        Assert.Equal(200, g.Status);
        var expected = Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(data)));
        Assert.Equal($"{expected} {data.Length}", g.Body);
        Assert.Equal("NEXT", Encoding.Latin1.GetString(client.Data));
    }

    [Fact]
    public async Task A_silent_upstream_times_out()
    {
        await using var origin = ScriptedOrigin.Start(async c =>
        {
            await c.ReadRequestAsync();
            await c.ReadRequestAsync(TimeSpan.FromSeconds(20));
        });
        var pool = new UpstreamPool("127.0.0.1", origin.Port, null, TimeSpan.FromSeconds(5));
        var g = await Exchange(pool, "GET", "/", timeouts: new UpstreamTimeouts(TimeSpan.FromMilliseconds(300), TimeSpan.FromSeconds(5)));
        Assert.Equal(UpstreamEnd.TimedOut, g.Result.End);
    }

    [Fact]
    public async Task Connect_failures_say_why()
    {
        var pool = new UpstreamPool("127.0.0.1", Wait.FreePort(), null, TimeSpan.FromSeconds(5));
        var g = await Exchange(pool, "GET", "/");
        Assert.Equal(UpstreamEnd.ConnectFailed, g.Result.End);
        Assert.Contains("connection refused", g.Result.Error);
    }

    [Fact]
    public async Task Tls_upstreams_are_verified_by_the_given_trust()
    {
        await using var origin = await TestOrigin.StartAsync(https: true);
        var cert = TestCerts.Localhost();
        var trusted = new UpstreamTls((_, c, _, errors) => c is not null && c.GetCertHashString() == cert.GetCertHashString()
            && (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == 0);
        var pool = new UpstreamPool("localhost", origin.Port, trusted, TimeSpan.FromSeconds(5));
        for (int i = 0; i < 3; i++) Assert.Equal(new string('x', 99) + "\n", (await Exchange(pool, "GET", "/100b")).Body);
        Assert.Equal(1, pool.Opened);

        var system = new UpstreamPool("localhost", origin.Port, UpstreamTls.System, TimeSpan.FromSeconds(5));
        var refused = await Exchange(system, "GET", "/100b");
        Assert.Equal(UpstreamEnd.ConnectFailed, refused.Result.End);
        Assert.Contains("TLS handshake", refused.Result.Error);

        var insecure = new UpstreamPool("localhost", origin.Port, new UpstreamTls((_, _, _, _) => true), TimeSpan.FromSeconds(5));
        Assert.Equal(200, (await Exchange(insecure, "GET", "/100b")).Status);
    }
}
