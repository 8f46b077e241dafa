using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Forward;

public sealed class ForwardProxyTests(OriginFixture f) : IClassFixture<OriginFixture>
{
    string O => f.Origin.Url;

    [Fact]
    public async Task Get_through_proxy_returns_body_and_adds_via()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var r = await Proc.CurlAsync("-i", "-x", gw.Url("web"), $"{O}/100b");
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith("HTTP/1.1 200", r.Stdout);
        Assert.Contains("Via: 1.1 bastion", r.Stdout);
        Assert.EndsWith(new string('x', 99) + "\n", r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("event") == "request" && l.Str("request") == $"GET {O}/100b");
        Assert.Equal("allow", line.Str("verdict"));
        Assert.Equal("loopback", line.Str("rule"));
        Assert.Equal(200, line.Num("status"));
        Assert.True(line.Num("bytes_out") > 100);
        Assert.StartsWith("127.0.0.1:", line.Str("client"));
        Assert.NotNull(line.Str("ts"));
        Assert.NotNull(line.Str("id"));
    }

    [Fact]
    public async Task Hop_by_hop_headers_do_not_cross_and_host_follows_target()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var r = await Proc.CurlAsync("-x", gw.Url("web"), "-H", "Connection: keep-alive, X-Private", "-H", "X-Private: secret",
            "-H", "Keep-Alive: timeout=5", "-H", "TE: trailers", "-H", "Proxy-Connection: keep-alive", "-H", "X-Normal: yes",
            "-H", "Host: wrong.example", $"{O}/echo");
        Assert.Equal(0, r.ExitCode);
        var echo = Json.Parse(r.Stdout);
        var headers = echo.GetProperty("headers");
        Assert.False(headers.TryGetProperty("X-Private", out _), r.Stdout);
        Assert.False(headers.TryGetProperty("Keep-Alive", out _), r.Stdout);
        Assert.False(headers.TryGetProperty("TE", out _), r.Stdout);
        Assert.False(headers.TryGetProperty("Proxy-Connection", out _), r.Stdout);
        Assert.Equal("yes", headers.GetProperty("X-Normal").GetString());
        Assert.Equal($"127.0.0.1:{f.Origin.Port}", headers.GetProperty("Host").GetString());
        Assert.Contains("1.1 bastion", headers.GetProperty("Via").GetString());
    }

    [Fact]
    public async Task Keep_alive_serves_several_requests_on_one_connection()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var r = await Proc.CurlAsync("-x", gw.Url("web"), $"{O}/100b", $"{O}/100b", $"{O}/100b");
        Assert.Equal(0, r.ExitCode);
        var conn = await gw.WaitForLogAsync(l => l.Str("event") == "connection");
        Assert.Equal("3 requests", conn.Str("request"));
    }

    [Theory]
    [InlineData("POST")]
    [InlineData("PUT")]
    [InlineData("PATCH")]
    [InlineData("DELETE")]
    public async Task Methods_with_bodies_reach_the_origin_intact(string method)
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var r = await Proc.CurlAsync("-x", gw.Url("web"), "-X", method, "--data-binary", "hello body", $"{O}/echo");
        Assert.Equal(0, r.ExitCode);
        var echo = Json.Parse(r.Stdout);
        Assert.Equal(method, echo.GetProperty("method").GetString());
        Assert.Equal(10, echo.GetProperty("length").GetInt64());
    }

    [Fact]
    public async Task Head_and_options_work()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var head = await Proc.CurlAsync("-I", "-x", gw.Url("web"), $"{O}/bytes/1000");
        Assert.Contains("Content-Length: 1000", head.Stdout);
        var opt = await Proc.CurlAsync("-i", "-X", "OPTIONS", "-H", "Max-Forwards: 0", "-x", gw.Url("web"), $"{O}/echo");
        Assert.StartsWith("HTTP/1.1 200", opt.Stdout);
        Assert.Contains("Allow:", opt.Stdout);
    }

    [Fact]
    public async Task Trace_is_denied_unless_a_rule_names_it()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var r = await Proc.CurlAsync("-i", "-X", "TRACE", "-x", gw.Url("web"), $"{O}/echo");
        Assert.StartsWith("HTTP/1.1 403", r.Stdout);
        await using var gw2 = await TestGateway.StartAsync(ProxyConfigs.Basic(rules: "      - allow: { method: TRACE }"));
        var r2 = await Proc.CurlAsync("-i", "-X", "TRACE", "-H", "Max-Forwards: 0", "-H", "Proxy-Authorization: Basic c2VjcmV0", "-x", gw2.Url("web"), $"{O}/echo");
        Assert.StartsWith("HTTP/1.1 200", r2.Stdout);
        Assert.Contains("message/http", r2.Stdout);
        Assert.DoesNotContain("c2VjcmV0", r2.Stdout);
    }

    [Fact]
    public async Task Large_download_and_upload_are_intact()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic(limits: "{ max_request_body: 1GiB }"));
        const long size = 40L * 1024 * 1024;
        var down = await Proc.RunAsync("bash", ["-c", $"curl -q -sS -x {gw.Url("web")} {O}/bytes/{size} | sha256sum"]);
        Assert.StartsWith(TestOrigin.PatternSha256(size), down.Stdout);
        var chunked = await Proc.RunAsync("bash", ["-c", $"curl -q -sS -x {gw.Url("web")} {O}/chunked/{size} | sha256sum"]);
        Assert.StartsWith(TestOrigin.PatternSha256(size), chunked.Stdout);

        var file = Path.Combine(gw.Dir, "upload.bin");
        var data = new byte[size];
        new Random(42).NextBytes(data);
        await File.WriteAllBytesAsync(file, data);
        var expected = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data));
        var up = await Proc.CurlAsync("-x", gw.Url("web"), "--data-binary", $"@{file}", $"{O}/sha256");
        Assert.Equal($"{expected} {size}", up.Stdout);
        var upChunked = await Proc.CurlAsync("-x", gw.Url("web"), "-H", "Transfer-Encoding: chunked", "--data-binary", $"@{file}", $"{O}/sha256");
        Assert.Equal($"{expected} {size}", upChunked.Stdout);
    }

    [Fact]
    public async Task Connect_tunnels_to_a_tls_origin()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var r = await Proc.CurlAsync("-k", "-x", gw.Url("web"), $"https://localhost:{f.Tls.Port}/100b");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(new string('x', 99) + "\n", r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"CONNECT localhost:{f.Tls.Port}");
        Assert.Equal("tunnels", line.Str("rule"));
        var closed = await gw.WaitForLogAsync(l => l.Str("event") == "connection" && l.Num("bytes_out") > 1000);
        Assert.True(closed.Num("bytes_in") > 100);
    }

    [Fact]
    public async Task Connect_to_a_port_the_policy_does_not_allow_is_403()
    {
        await using var gw = await TestGateway.StartAsync("""
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: out }
            policies:
              out:
                rules:
                  - allow: { method: CONNECT, port: 443 }
                    name: tls-only
            """);
        var r = await Proc.CurlAsync("-k", "-v", "-x", gw.Url("web"), $"https://localhost:{f.Tls.Port}/100b");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("403", r.Stderr);
        var line = await gw.WaitForLogAsync(l => l.Str("verdict") == "deny");
        Assert.Equal("out#default", line.Str("rule"));
    }

    [Fact]
    public async Task Denials_name_the_reason_and_request_id()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var r = await Proc.CurlAsync("-i", "-x", gw.Url("web"), "http://www.blocked.test/page");
        Assert.StartsWith("HTTP/1.1 403", r.Stdout);
        var id = r.Stdout.Split("\r\n").First(l => l.StartsWith("X-Bastion-Request-Id:"))[21..].Trim();
        Assert.Contains(id, r.Stdout.Split("\r\n\r\n", 2)[1]);
        Assert.Contains("blocked domain", r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("id") == id);
        Assert.Equal("deny", line.Str("verdict"));
        Assert.Equal("no-blocked", line.Str("rule"));
        Assert.Equal(403, line.Num("status"));

        Assert.Contains("secret area", (await Proc.CurlAsync("-x", gw.Url("web"), $"{O}/secret/a/b")).Stdout);
        Assert.Contains("bad robot", (await Proc.CurlAsync("-x", gw.Url("web"), "-A", "EvilBot/1.0", $"{O}/100b")).Stdout);
    }

    [Fact]
    public async Task Denied_responses_are_replaced_before_any_byte_reaches_the_client()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var r = await Proc.CurlAsync("-i", "-x", gw.Url("web"), $"{O}/type/application/x-msdownload");
        Assert.StartsWith("HTTP/1.1 403", r.Stdout);
        Assert.DoesNotContain("typed body", r.Stdout);
        Assert.Contains("no binaries", r.Stdout);
        var big = await Proc.CurlAsync("-i", "-x", gw.Url("web"), $"{O}/bytes/{60L * 1024 * 1024}");
        Assert.StartsWith("HTTP/1.1 403", big.Stdout);
        Assert.Contains("response too big", big.Stdout);
        // Unknown length: the transfer is cut once it passes the bound, and the denial logged.
        var chunked = await Proc.CurlAsync("-o", "/dev/null", "-w", "%{size_download}", "-x", gw.Url("web"), $"{O}/chunked/{60L * 1024 * 1024}");
        Assert.NotEqual(0, chunked.ExitCode);
        Assert.True(long.Parse(chunked.Stdout) < 60L * 1024 * 1024);
        await gw.WaitForLogAsync(l => l.Str("rule") == "too-big" && l.Str("reason")!.Contains("unknown length"));
        var ok = await Proc.CurlAsync("-i", "-x", gw.Url("web"), $"{O}/type/text/html");
        Assert.StartsWith("HTTP/1.1 200", ok.Stdout);
        await gw.WaitForLogAsync(l => l.Str("rule") == "too-big" && l.Num("status") == 403);
    }

    [Fact]
    public async Task Authentication_asks_with_407_and_accepts_valid_users()
    {
        var hash = Bastion.Identity.Htpasswd.HashBcrypt("s3cret", 4);
        await using var gw = await TestGateway.StartAsync("""
            identity:
              users: users.htpasswd
              groups:
                staff: [alice]
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: out, authenticate: true }
            policies:
              out:
                rules:
                  - allow: { group: staff }
                    name: staff
            """, new Dictionary<string, string> { ["users.htpasswd"] = $"alice:{hash}\nbob:{hash}\n" });
        var none = await Proc.CurlAsync("-i", "-x", gw.Url("web"), $"{O}/100b");
        Assert.StartsWith("HTTP/1.1 407", none.Stdout);
        Assert.Contains("Proxy-Authenticate: Basic realm=\"bastion\"", none.Stdout);
        var wrong = await Proc.CurlAsync("-i", "-x", gw.Url("web"), "-U", "alice:nope", $"{O}/100b");
        Assert.StartsWith("HTTP/1.1 407", wrong.Stdout);
        var alice = await Proc.CurlAsync("-i", "-x", gw.Url("web"), "-U", "alice:s3cret", $"{O}/echo");
        Assert.StartsWith("HTTP/1.1 200", alice.Stdout);
        Assert.DoesNotContain("Proxy-Authorization", alice.Stdout.Split("\r\n\r\n", 2)[1]);
        var bob = await Proc.CurlAsync("-i", "-x", gw.Url("web"), "-U", "bob:s3cret", $"{O}/100b");
        Assert.StartsWith("HTTP/1.1 403", bob.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("user") == "alice" && l.Str("event") == "request" && l.Num("status") == 200);
        Assert.Equal("staff", line.Str("rule"));
        // The failed login names the user it tried, as Apache's %u and nginx's $remote_user do.
        var failed = await gw.WaitForLogAsync(l => l.Str("user") == "alice" && l.Num("status") == 407);
        Assert.Equal("authenticate", failed.Str("rule"));
        Assert.Equal("deny", failed.Str("verdict"));
    }

    [Theory]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400")]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400")]
    [InlineData("GET http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n", "400")]
    [InlineData("GET http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost : x\r\n\r\n", "400")]
    [InlineData("GET http://127.0.0.1:{0}/echo HTTP/2.0\r\nHost: x\r\n\r\n", "505")]
    [InlineData("GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", "400")]
    [InlineData("garbage\r\n\r\n", "400")]
    [InlineData("POST http://127.0.0.1:{0}/sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "400")]
    public async Task Malformed_or_ambiguous_requests_get_400_and_close(string request, string status)
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var response = await Raw.ExchangeAsync(gw.Port("web"), string.Format(request, f.Origin.Port));
        Assert.StartsWith($"HTTP/1.1 {status}", response);
        Assert.Contains("Connection: close", response);
        Assert.DoesNotContain("<<timeout", response);
    }

    [Fact]
    public async Task Bad_chunk_size_is_400()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var response = await Raw.ExchangeAsync(gw.Port("web"),
            $"POST http://127.0.0.1:{f.Origin.Port}/sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 400", response);
        Assert.Contains("bad chunk size", response);
    }

    [Fact]
    public async Task Body_over_the_limit_is_413()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic(limits: "{ max_request_body: 1KiB }"));
        var r = await Proc.CurlAsync("-i", "-x", gw.Url("web"), "--data-binary", new string('a', 2000), $"{O}/sha256");
        Assert.StartsWith("HTTP/1.1 413", r.Stdout);
        var chunked = await Raw.ExchangeAsync(gw.Port("web"),
            $"POST http://127.0.0.1:{f.Origin.Port}/sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{new string('a', 2048)}\r\n0\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 413", chunked);
    }

    [Fact]
    public async Task Unreachable_upstream_is_502_and_slow_upstream_is_504()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic(limits: "{ response_timeout: 300ms }"));
        var port = Wait.FreePort();
        var r = await Proc.CurlAsync("-i", "-x", gw.Url("web"), $"http://127.0.0.1:{port}/");
        Assert.StartsWith("HTTP/1.1 502", r.Stdout);
        Assert.Contains("connection refused", r.Stdout);
        var slow = await Proc.CurlAsync("-i", "-x", gw.Url("web"), $"{O}/slow/3000");
        Assert.StartsWith("HTTP/1.1 504", slow.Stdout);
        var tunnel = await Proc.CurlAsync("-v", "-x", gw.Url("web"), $"https://127.0.0.1:{port}/");
        Assert.Contains("502", tunnel.Stderr);
    }

    [Fact]
    public async Task Slow_header_client_is_cut_off_at_the_header_timeout()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic(limits: "{ header_timeout: 500ms }"));
        using var s = await Sock.ConnectAsync(gw.Port("web"));
        await s.SendAsync(Encoding.ASCII.GetBytes($"GET {O}/100b HTTP/1.1\r\nHost: x\r\nX-Slow: "), SocketFlags.None);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var response = await Raw.ReadUntilCloseAsync(s, TimeSpan.FromSeconds(5));
        Assert.StartsWith("HTTP/1.1 408", response);
        Assert.DoesNotContain("<<timeout", response);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(4));
    }

    [Fact]
    public async Task Connection_limit_refuses_extra_clients()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic(limits: "{ max_connections: 2 }"));
        using var a = await Sock.ConnectAsync(gw.Port("web"));
        using var b = await Sock.ConnectAsync(gw.Port("web"));
        await Wait.UntilAsync(() => gw.Host.Connections.Count == 2, TimeSpan.FromSeconds(5), "two connections registered");
        var third = await Raw.ExchangeAsync(gw.Port("web"), $"GET {O}/100b HTTP/1.1\r\nHost: x\r\n\r\n", TimeSpan.FromSeconds(5));
        Assert.True(third.StartsWith("HTTP/1.1 503") || third.Contains("<<reset>>"), third);
        Assert.DoesNotContain("<<timeout", third);
        await gw.WaitForLogAsync(l => l.Str("rule") == "limits.max_connections");
    }

    [Fact]
    public async Task Many_concurrent_clients_all_get_their_answers()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        using var handler = new SocketsHttpHandler { Proxy = new WebProxy(gw.Url("web")), UseProxy = true, MaxConnectionsPerServer = 50 };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
        var tasks = Enumerable.Range(0, 400).Select(async i =>
        {
            var body = await client.GetStringAsync($"{O}/echo?i={i}");
            return Json.Parse(body).GetProperty("query").GetString() == $"?i={i}";
        });
        var results = await Task.WhenAll(tasks);
        Assert.All(results, Assert.True);
    }

    [Fact]
    public async Task Expect_100_continue_is_answered_and_the_body_forwarded()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        var r = await Proc.CurlAsync("-x", gw.Url("web"), "-H", "Expect: 100-continue", "--data-binary", "0123456789", $"{O}/sha256");
        Assert.EndsWith(" 10", r.Stdout);
    }

    [Fact]
    public async Task Stopping_closes_idle_connections_and_lets_requests_in_flight_finish()
    {
        var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        try
        {
            using var idle = await Sock.ConnectAsync(gw.Port("web"));
            var hold = $"drain-{Guid.NewGuid():N}";
            var slow = Proc.CurlAsync("-sS", "-w", "%{http_code}", "-o", "/dev/null", "-x", gw.Url("web"), $"{O}/hold/{hold}");
            await f.Origin.Arrived(hold).WaitAsync(TimeSpan.FromSeconds(10));
            await Wait.UntilAsync(() => gw.Host.Connections.Count == 2, TimeSpan.FromSeconds(10), "both connections open");
            var stop = gw.Host.StopAsync(TimeSpan.FromSeconds(10));
            var idleResult = await Raw.ReadUntilCloseAsync(idle, TimeSpan.FromSeconds(3));
            Assert.DoesNotContain("<<timeout", idleResult);
            // The request was in flight all along: the origin answers only now, while the gateway drains.
            f.Origin.Release(hold);
            Assert.Equal("200", (await slow).Stdout);
            await stop;
        }
        finally
        {
            await gw.DisposeAsync();
        }
    }

    [Fact]
    public async Task Clients_vanishing_mid_request_do_not_stall_the_next_ones()
    {
        await using var gw = await TestGateway.StartAsync(ProxyConfigs.Basic());
        // 50 clients send a request to a slow origin and vanish before the answer.
        var gone = Enumerable.Range(0, 50).Select(async _ =>
        {
            using var s = await Sock.ConnectAsync(gw.Port("web"));
            await s.SendAsync(Encoding.ASCII.GetBytes($"GET {O}/slow/300 HTTP/1.1\r\nHost: x\r\n\r\n"), SocketFlags.None);
        });
        await Task.WhenAll(gone);
        // 50 new ones right behind them all get answers promptly.
        using var handler = new SocketsHttpHandler { Proxy = new WebProxy(gw.Url("web")), UseProxy = true };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(5) };
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var codes = await Task.WhenAll(Enumerable.Range(0, 50).Select(async _ => (int)(await client.GetAsync($"{O}/100b")).StatusCode));
        Assert.All(codes, c => Assert.Equal(200, c));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
    }
}
