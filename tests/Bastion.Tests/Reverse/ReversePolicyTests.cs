using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Bastion.Tests.Infrastructure;
using static Bastion.Tests.Reverse.ReverseRoutingTests;

namespace Bastion.Tests.Reverse;

/// <summary>Policy on requests and responses, authentication, and the limits: 413, 429, 504, header size, connections.</summary>
public class ReversePolicyTests
{
    [Fact]
    public async Task Policy_denies_before_routing_and_logs_the_decision()
    {
        await using var o = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: site-in
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            policies:
              site-in:
                default: deny
                rules:
                  - deny: { path: "/admin/**" }
                    name: no-admin
                    reason: admin is internal
                  - deny: { method: DELETE }
                  - deny: { header: { User-Agent: "evilbot*" } }
                    reason: bad bot
                  - allow: { source: 127.0.0.0/8, host: ["127.0.0.1", "*.test"] }
                  - deny: { content_type: "application/x-*" }
                    name: no-binaries
                    reason: executable content
            """);
        var url = gw.Url("site");
        var (status, body) = await Get($"{url}/admin/users");
        Assert.Equal(403, status);
        // The gateway's own page (the same style as the forward proxy's): status, reason, rule, request id.
        Assert.Contains("<h1>403 Forbidden</h1>", body);
        Assert.Contains("<p>admin is internal</p>", body);
        Assert.Contains("Rule: <code>no-admin</code>", body);
        var id = System.Text.RegularExpressions.Regex.Match(body, @"Request id: <code>([^<]+)</code>").Groups[1].Value;
        var line = await gw.WaitForLogAsync(l => l.Str("id") == id);
        Assert.Equal("deny", line.Str("verdict"));
        Assert.Equal("no-admin", line.Str("rule"));
        Assert.Equal("admin is internal", line.Str("reason"));
        Assert.Equal(403, line.Num("status"));
        Assert.Contains("GET http://127.0.0.1:", line.Str("request"));
        Assert.Equal(0, o.Requests);

        Assert.Equal(403, (await Get($"{url}/100b", "-X", "DELETE")).Status);
        var head = await Proc.CurlAsync("-I", $"{url}/admin/");
        Assert.StartsWith("HTTP/1.1 403", head.Stdout);
        (status, body) = await Get($"{url}/100b", "-A", "evilbot/2");
        Assert.Equal(403, status);
        Assert.Contains("bad bot", body);
        Assert.Contains("<code>site-in#3</code>", body);
        // Not an allowed host: the default decides.
        (status, body) = await Get($"{url}/100b", "-H", "Host: example.com");
        Assert.Equal(403, status);
        Assert.Contains("<code>site-in#default</code>", body);
        Assert.Equal(0, o.Requests);

        Assert.Equal(200, (await Get($"{url}/100b", "-H", "Host: www.test")).Status);
        Assert.Equal(1, o.Requests);

        // Response rules: judged on the response head; nothing of the denied response reaches the client.
        var r = await Proc.CurlAsync("-i", $"{url}/type/application/x-msdownload");
        Assert.Contains("HTTP/1.1 403", r.Stdout);
        Assert.Contains("executable content", r.Stdout);
        Assert.Contains("<code>no-binaries</code>", r.Stdout);
        Assert.Contains("Content-Type: text/html", r.Stdout);
        Assert.DoesNotContain("typed body", r.Stdout);
        Assert.DoesNotContain("application/x-msdownload", r.Stdout);
        Assert.Equal(200, (await Get($"{url}/type/text/plain")).Status);
        line = await gw.WaitForLogAsync(l => l.Str("rule") == "no-binaries");
        Assert.Equal("deny", line.Str("verdict"));
        Assert.Equal(403, line.Num("status"));
    }

    [Fact]
    public async Task Basic_authentication_is_asked_and_the_user_reaches_the_policy()
    {
        await using var o = await TestOrigin.StartAsync();
        var sha = Convert.ToBase64String(SHA1.HashData(Encoding.UTF8.GetBytes("s3cret")));
        await using var gw = await TestGateway.StartAsync($$"""
            identity:
              users: users.htpasswd
              groups: { staff: [alice] }
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                authenticate: true
                policy: staff-only
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            policies:
              staff-only:
                rules:
                  - allow: { group: staff }
            """, new Dictionary<string, string> { ["users.htpasswd"] = $"alice:{{SHA}}{sha}\nbob:{{SHA}}{sha}\n" });
        var url = gw.Url("site");
        var r = await Proc.CurlAsync("-i", $"{url}/echo");
        Assert.Contains("HTTP/1.1 401", r.Stdout);
        Assert.Contains("WWW-Authenticate: Basic realm=\"bastion\"", r.Stdout);
        Assert.Equal(401, (await Get($"{url}/echo", "-u", "alice:wrong")).Status);
        Assert.Equal(403, (await Get($"{url}/echo", "-u", "bob:s3cret")).Status);
        var (status, body) = await Get($"{url}/echo", "-u", "alice:s3cret");
        Assert.Equal(200, status);
        // The gateway's credentials are not passed on.
        Assert.False(Headers(body).TryGetProperty("Authorization", out _));
        var line = await gw.WaitForLogAsync(l => l.Str("user") == "alice" && l.Num("status") == 200);
        Assert.Equal("allow", line.Str("verdict"));
    }

    [Fact]
    public async Task Limits_answer_413_429_504_431()
    {
        await using var o = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                limits: { max_request_body: 1KiB, response_timeout: 2s, max_header_size: 4KiB }
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
              - name: rated
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                limits: { rate: 1/m, burst: 3 }
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            {{AllowAll}}
            """);
        var url = gw.Url("site");
        // Warm up (JIT, the upstream connection pool) first: a cold first request can miss the 300 ms response timeout.
        for (var sw = System.Diagnostics.Stopwatch.StartNew(); (await Get($"{url}/100b")).Status != 200;)
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), "the upstream path never answered 200");
        var small = new string('a', 1000);
        var big = new string('a', 2000);
        Assert.Equal(200, (await Get($"{url}/sha256", "--data-binary", small)).Status);
        var (status, body) = await Get($"{url}/sha256", "--data-binary", big);
        Assert.Equal(413, status);
        Assert.Contains("limits.max_request_body", body);
        // Chunked: no length up front, Kestrel's limit stops it while it streams.
        (status, body) = await Get($"{url}/sha256", "-H", "Transfer-Encoding: chunked", "--data-binary", big);
        Assert.True(status == 413, body);
        await gw.WaitForLogAsync(l => l.Num("status") == 413 && l.Str("verdict") == "deny");

        (status, body) = await Get($"{url}/slow/5000");
        Assert.Equal(504, status);
        Assert.Contains("did not answer in time", body);
        await gw.WaitForLogAsync(l => l.Num("status") == 504);

        Assert.Equal(431, (await Get($"{url}/100b", "-H", "X-Big: " + new string('h', 5000))).Status);

        var rated = gw.Url("rated");
        var urls = Enumerable.Repeat($"{rated}/100b", 5).SelectMany(u => new[] { "-o", "/dev/null", u });
        var rr = await Proc.CurlAsync([.. urls, "-w", "%{http_code}\n"]);
        Assert.Equal(["200", "200", "200", "429", "429"], rr.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var hdr = await Proc.CurlAsync("-i", $"{rated}/100b");
        Assert.Contains("HTTP/1.1 429", hdr.Stdout);
        Assert.Matches(@"Retry-After: \d+", hdr.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Num("status") == 429);
        Assert.Equal("limits.rate", line.Str("rule"));
    }

    [Fact]
    public async Task Connections_are_registered_and_limited()
    {
        await using var o = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                limits: { max_connections: 1 }
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            {{AllowAll}}
            """);
        using var first = new TcpClient();
        await first.ConnectAsync(gw.EndPoint("site"));
        await Wait.UntilAsync(() => gw.Host.Connections.CountFor("site") == 1, TimeSpan.FromSeconds(10), "connection registered");
        var c = gw.Host.Connections.All.Single(x => x.Listener == "site");
        Assert.Equal("http-reverse", c.Type);
        Assert.Equal(((System.Net.IPEndPoint)first.Client.LocalEndPoint!).Port, c.Client.Port);

        // Over the limit: closed without an answer, and logged.
        var r = await Proc.CurlAsync($"{gw.Url("site")}/100b");
        Assert.NotEqual(0, r.ExitCode);
        await gw.WaitForLogAsync(l => l.Str("rule") == "limits.max_connections");

        first.Close();
        await Wait.UntilAsync(() => gw.Host.Connections.CountFor("site") == 0, TimeSpan.FromSeconds(10), "connection closed");
        Assert.Equal(200, (await Get($"{gw.Url("site")}/100b")).Status);
        // The connection's line counts what crossed it: the 100-byte body and the response head.
        var closed = await gw.WaitForLogAsync(l => l.Str("event") == "connection" && l.Num("bytes_out") > 100 && l.Str("request") == "1 requests");
        Assert.Equal("site", closed.Str("listener"));
    }
}
