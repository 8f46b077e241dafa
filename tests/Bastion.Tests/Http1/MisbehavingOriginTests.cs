using System.Text;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Http1;

/// <summary>
/// The response-side rules through both listeners, with an origin that writes exactly the bytes under test: a
/// response with ambiguous framing is answered 502 by the gateway, the upstream connection is closed, nothing of
/// it reaches the client; keep-alive reuse and the stale-connection retry as the client sees them.
/// </summary>
public sealed class MisbehavingOriginTests
{
    internal static string Yaml(int origin) => $$"""
        listeners:
          - { name: fwd, type: http-proxy, listen: 127.0.0.1:0, policy: open }
          - name: rev
            type: http-reverse
            listen: 127.0.0.1:0
            policy: open
            routes:
              - { path: "/{**rest}", upstream: "http://127.0.0.1:{{origin}}" }
        policies:
          open:
            rules:
              - allow: { source: 127.0.0.0/8 }
        """;

    internal static string Request(string listener, int origin, string path, string method = "GET", string extra = "") =>
        listener == "fwd"
            ? $"{method} http://127.0.0.1:{origin}{path} HTTP/1.1\r\nHost: 127.0.0.1:{origin}\r\n{extra}\r\n"
            : $"{method} {path} HTTP/1.1\r\nHost: site.test\r\n{extra}\r\n";

    public static TheoryData<string, string, string> Bad => new()
    {
        { "fwd", "CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" },
        { "rev", "CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" },
        { "fwd", "conflicting CLs", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" },
        { "rev", "conflicting CLs", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!" },
        { "fwd", "bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n" },
        { "rev", "bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n" },
        { "fwd", "chunk size overflow", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n" },
        { "fwd", "obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 2\r\n\r\nok" },
        { "rev", "obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n\tfolded\r\nContent-Length: 2\r\n\r\nok" },
        { "fwd", "bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok" },
        { "rev", "bare CR", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok" },
        { "fwd", "invalid status line", "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok" },
        { "rev", "invalid status line", "HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok" },
        { "fwd", "space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok" },
        { "rev", "TE not chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" },
        { "fwd", "body on 204", "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled" },
        { "rev", "body on 204", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello" },
        { "fwd", "body on 304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello" },
        { "rev", "body on 304", "HTTP/1.1 304 Not Modified\r\n\r\nsmuggled" },
        { "fwd", "body on HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" },
        { "rev", "body on HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" },
    };

    [Theory]
    [MemberData(nameof(Bad))]
    public async Task Ambiguous_responses_are_a_502_and_close_the_upstream(string listener, string what, string response)
    {
        var closedByGateway = new TaskCompletionSource<bool>();
        await using var origin = ScriptedOrigin.Start(async c =>
        {
            if (await c.ReadRequestAsync() is not { } head) return;
            if (head.Contains("/good", StringComparison.Ordinal))
            {
                await c.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood");
                await c.ReadRequestAsync();
                return;
            }
            await c.WriteAsync(response);
            // The gateway must close this connection: the next read ends.
            closedByGateway.TrySetResult(await c.ReadRequestAsync(TimeSpan.FromSeconds(10)) is null);
        });
        await using var gw = await TestGateway.StartAsync(Yaml(origin.Port));
        string method = what.Contains("HEAD", StringComparison.Ordinal) ? "HEAD" : "GET";
        var answer = await Raw.ExchangeAsync(gw.Port(listener), Request(listener, origin.Port, "/bad", method, "Connection: close\r\n"));
        Assert.StartsWith("HTTP/1.1 502", answer);
        Assert.Contains("X-Bastion-Request-Id:", answer);
        Assert.DoesNotContain("hello", answer);
        Assert.DoesNotContain("smuggled", answer);
        Assert.True(await closedByGateway.Task.WaitAsync(TimeSpan.FromSeconds(15)), $"{what}: the upstream connection stayed open");
        var line = await gw.WaitForLogAsync(l => l.Str("event") == "request" && l.Num("status") == 502);
        Assert.Contains("invalid response", line.Str("reason"));
        // The gateway goes on with a fresh upstream connection.
        var good = await Raw.ExchangeAsync(gw.Port(listener), Request(listener, origin.Port, "/good", extra: "Connection: close\r\n"));
        Assert.StartsWith("HTTP/1.1 200", good);
        Assert.EndsWith("good", good);
    }

    [Theory]
    [InlineData("fwd")]
    [InlineData("rev")]
    public async Task Keep_alive_reuses_one_upstream_connection_across_clients(string listener)
    {
        await using var origin = ScriptedOrigin.Answering("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        await using var gw = await TestGateway.StartAsync(Yaml(origin.Port));
        int port = gw.Port(listener);
        // Sequential clients, each with two requests on its connection.
        for (int i = 0; i < 5; i++)
        {
            var twice = Request(listener, origin.Port, $"/a{i}") + Request(listener, origin.Port, $"/b{i}", extra: "Connection: close\r\n");
            var answer = await Raw.ExchangeAsync(port, twice);
            Assert.True(System.Text.RegularExpressions.Regex.Count(answer, "HTTP/1.1 200 OK\r\n") == 2, answer);
        }
        Assert.Equal(1, origin.Connections);
        Assert.Equal(10, origin.Requests.Count);
    }

    [Theory]
    [InlineData("fwd")]
    [InlineData("rev")]
    public async Task A_stale_upstream_connection_is_retried_once_for_requests_without_a_body(string listener)
    {
        // The origin answers keep-alive, then closes right after: every pooled connection goes stale.
        await using var origin = ScriptedOrigin.Answering("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", closeAfter: true);
        await using var gw = await TestGateway.StartAsync(Yaml(origin.Port));
        int port = gw.Port(listener);
        for (int i = 0; i < 4; i++)
        {
            var answer = await Raw.ExchangeAsync(port, Request(listener, origin.Port, $"/r{i}", extra: "Connection: close\r\n"));
            Assert.StartsWith("HTTP/1.1 200", answer);
        }
        Assert.Equal(4, origin.Requests.Count);

        // With a body, a stale connection is not retried (part of the body may be gone): the client gets a 502.
        var closed = new TaskCompletionSource();
        await using var once = ScriptedOrigin.Start(async c =>
        {
            if (await c.ReadRequestAsync() is null) return;
            await c.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            c.Close();
            closed.TrySetResult();
        });
        await using var gw2 = await TestGateway.StartAsync(Yaml(once.Port));
        port = gw2.Port(listener);
        Assert.StartsWith("HTTP/1.1 200", await Raw.ExchangeAsync(port, Request(listener, once.Port, "/first", extra: "Connection: close\r\n")));
        await closed.Task;
        var post = await Raw.ExchangeAsync(port, Request(listener, once.Port, "/post", "POST", "Content-Length: 5\r\nConnection: close\r\n") + "hello");
        Assert.StartsWith("HTTP/1.1 502", post);
        Assert.Equal(1, once.Connections);
    }

    [Theory]
    [InlineData("fwd")]
    [InlineData("rev")]
    public async Task Interim_103_reaches_an_http_1_1_client_before_the_final_response(string listener)
    {
        await using var origin = ScriptedOrigin.Answering(
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        await using var gw = await TestGateway.StartAsync(Yaml(origin.Port));
        var answer = await Raw.ExchangeAsync(gw.Port(listener), Request(listener, origin.Port, "/", extra: "Connection: close\r\n"));
        Assert.StartsWith("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n", answer);
        Assert.EndsWith("ok", answer);
    }

    [Theory]
    [InlineData("fwd")]
    [InlineData("rev")]
    public async Task Close_delimited_responses_are_chunked_to_http_1_1_clients_and_raw_to_http_1_0(string listener)
    {
        await using var origin = ScriptedOrigin.Start(async c =>
        {
            await c.ReadRequestAsync();
            await c.WriteAsync("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ");
            await c.WriteAsync("close");
            c.Close();
        });
        await using var gw = await TestGateway.StartAsync(Yaml(origin.Port));
        var http11 = await Raw.ExchangeAsync(gw.Port(listener), Request(listener, origin.Port, "/", extra: "Connection: close\r\n"));
        Assert.Contains("Transfer-Encoding: chunked\r\n", http11);
        Assert.Matches("\r\n\r\n(6\r\nuntil \r\n5\r\nclose\r\n|b\r\nuntil close\r\n)0\r\n\r\n$", http11);
        var http10 = await Raw.ExchangeAsync(gw.Port(listener), Request(listener, origin.Port, "/").Replace("HTTP/1.1\r\n", "HTTP/1.0\r\n", StringComparison.Ordinal));
        Assert.StartsWith("HTTP/1.1 200", http10);
        Assert.Contains("Connection: close\r\n", http10);
        Assert.EndsWith("\r\n\r\nuntil close", http10);
    }

    [Theory]
    [InlineData("fwd")]
    [InlineData("rev")]
    public async Task Response_heads_cross_byte_for_byte_less_hop_by_hop_fields(string listener)
    {
        await using var origin = ScriptedOrigin.Answering("HTTP/1.1 200 Fine Thanks\r\nX-Odd-Case:  keep  me \r\nConnection: x-hop\r\n"
            + "X-Hop: secret\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Obs: caf\u00e9\r\nContent-Length: 2\r\n\r\nok");
        await using var gw = await TestGateway.StartAsync(Yaml(origin.Port));
        var answer = await Raw.ExchangeAsync(gw.Port(listener), Request(listener, origin.Port, "/", extra: "Connection: close\r\n"));
        Assert.StartsWith("HTTP/1.1 200 Fine Thanks\r\nX-Odd-Case:  keep  me \r\n", answer);
        Assert.Contains("\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Obs: caf\u00e9\r\n", answer);
        Assert.DoesNotContain("X-Hop", answer);
        Assert.DoesNotContain("Keep-Alive", answer);
        Assert.Equal(listener == "fwd", answer.Contains("Via: 1.1 bastion", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("fwd")]
    [InlineData("rev")]
    public async Task Request_heads_cross_byte_for_byte_with_only_hop_by_hop_changes(string listener)
    {
        await using var origin = ScriptedOrigin.Answering("HTTP/1.1 204 No Content\r\n\r\n");
        await using var gw = await TestGateway.StartAsync(Yaml(origin.Port));
        await Raw.ExchangeAsync(gw.Port(listener), Request(listener, origin.Port, "/x?y=1",
            extra: "X-Odd:  spaced  value \r\nConnection: close, X-Private\r\nX-Private: 1\r\nTE: trailers\r\nx-lower: caf\u00e9\r\n"));
        var head = Assert.Single(origin.Requests);
        Assert.StartsWith("GET /x?y=1 HTTP/1.1\r\n", head);
        Assert.Contains("\r\nX-Odd:  spaced  value \r\n", head);
        Assert.Contains("\r\nx-lower: caf\u00e9\r\n", head);
        Assert.DoesNotContain("X-Private", head);
        Assert.DoesNotContain("TE:", head);
        Assert.DoesNotContain("Connection", head);
        Assert.Contains(listener == "fwd" ? $"\r\nHost: 127.0.0.1:{origin.Port}\r\n" : $"\r\nHost: 127.0.0.1:{origin.Port}\r\n", head);
    }
}
