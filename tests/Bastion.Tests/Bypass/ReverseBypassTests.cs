using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Bypass;

/// <summary>Issue 9's "Why" on the reverse proxy, over HTTP/1.1 (raw) and HTTP/2 (curl over TLS), with nginx behind it.</summary>
public sealed class ReverseBypassTests(BypassFixture f) : IClassFixture<BypassFixture>
{
    int Site => f.Gw.Port("site");

    Task<Http1Response> Get(string path, params string[] headers) =>
        Http1Response.SendAsync(Site, $"GET {path} HTTP/1.1", headers.Any(h => h.StartsWith("Host:", StringComparison.Ordinal)) ? headers : ["Host: site.test", .. headers]);

    [Theory]
    [InlineData("//admin/x", 400)]
    [InlineData("/public/..%2fadmin/x", 400)]
    [InlineData("/admin%2fx", 400)]
    [InlineData("/public/%2e%2e/admin/x", 403)]
    // Routes and strip_prefix ignore case; path rules now do too: /ADMIN/x was rewritten to /admin/x past the deny.
    [InlineData("/ADMIN/x", 403)]
    [InlineData("/Admin/x", 403)]
    [InlineData("/a.ex%65", 403)]
    public async Task Http1_paths_nginx_would_normalise_into_a_denied_area_are_refused(string path, int status)
    {
        var r = await Get(path);
        Assert.True(r.Status == status, $"{path}: {r}");
        Assert.DoesNotContain("ADMIN", r.Body);
        Assert.DoesNotContain("EXE", r.Body);
        var (allowed, output) = await f.ExplainAsync("site", "GET", $"http://site.test{path}");
        Assert.False(allowed, output);
    }

    [Fact]
    public async Task Http1_allowed_paths_reach_nginx_in_canonical_form()
    {
        var r = await Get("/public/./a/../%7Euser/x?q=%41");
        Assert.Equal(200, r.Status);
        Assert.Equal("OPEN /public/~user/x\n", r.Body);
        Assert.Contains("GET /public/~user/x?q=A HTTP/1.1", f.Nginx.AccessLog);
    }

    [Theory]
    [InlineData("//admin/x", 400)]
    [InlineData("/public/..%2fadmin/x", 400)]
    [InlineData("/ADMIN/x", 403)]
    [InlineData("/a.ex%65", 403)]
    [InlineData("/public/ok", 200)]
    public async Task Http2_paths_are_judged_the_same(string path, int status)
    {
        var r = await Proc.CurlAsync("-k", "--http2", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
            $"https://localhost:{f.Gw.Port("site-tls")}{path}");
        Assert.Equal($"{status} 2", r.Stdout);
    }

    [Fact]
    public async Task A_trailing_dot_in_host_does_not_defeat_a_regex_host_rule()
    {
        var r = await Get("/x", "Host: secret2.site.test.");
        Assert.True(r.Status == 403, r.ToString());
        Assert.Contains("no-secret", r.Body);
        Assert.False((await f.ExplainAsync("site", "GET", "http://secret2.site.test./x")).Allowed);
        Assert.Equal(200, (await Get("/x", "Host: public.site.test.")).Status);
    }

    [Fact]
    public async Task Duplicate_header_lines_cannot_dilute_a_deny_and_can_be_refused()
    {
        Assert.Equal(403, (await Get("/x", "X-Debug: 0", "X-Debug: 1")).Status);
        Assert.Equal(403, (await Get("/x", "X-Debug: 0, 1")).Status);
        Assert.Equal(200, (await Get("/x", "X-Debug: 0", "X-Debug: 0")).Status);
        var strict = await Http1Response.SendAsync(f.Gw.Port("site-strict"), "GET /x HTTP/1.1", "Host: a", "X-Debug: 0", "X-Debug: 2");
        Assert.True(strict.Status == 400, strict.ToString());
        Assert.Contains("conflicting", strict.Body);
    }

    [Fact]
    public async Task A_response_is_judged_on_every_media_type()
    {
        var r = await Get("/two-types/setup");
        Assert.True(r.Status == 403, r.ToString());
        Assert.Contains("no-binaries", r.Body);
        Assert.DoesNotContain("MZ", r.Body);
    }

    [Fact]
    public async Task A_response_framed_two_ways_is_refused()
    {
        var r = await Get("/cl-te/x");
        Assert.True(r.Status == 502, r.ToString());
        Assert.DoesNotContain("FORGED", r.Body);
    }

    [Fact]
    public async Task An_unrequested_101_is_refused_and_the_next_request_is_still_judged()
    {
        int seen = f.Unrequested101.Requests.Count;
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(IPAddress.Loopback, Site);
        // On the landed code the 101 turned this connection into a tunnel: the second request reached the
        // upstream without a decision or a log line.
        await s.SendAsync(Encoding.ASCII.GetBytes("GET /upgrade101/x HTTP/1.1\r\nHost: a\r\n\r\n"), SocketFlags.None);
        var first = Http1Response.Parse(await Raw.ReadHeadAsync(s, TimeSpan.FromSeconds(10)));
        Assert.True(first.Status == 502, first.ToString());
        await s.SendAsync(Encoding.ASCII.GetBytes("GET /admin/secret HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), SocketFlags.None);
        var rest = await Raw.ReadUntilCloseAsync(s, TimeSpan.FromSeconds(10));
        Assert.DoesNotContain("ADMIN", rest);
        Assert.Equal(seen + 1, f.Unrequested101.Requests.Count);
        var line = await f.Gw.WaitForLogAsync(l => (l.Str("request") ?? "").EndsWith("/upgrade101/x", StringComparison.Ordinal));
        Assert.Equal(502, line.Num("status"));
        Assert.Contains("101", line.Str("reason"));
    }

    [Fact]
    public async Task A_101_to_a_protocol_the_request_did_not_name_is_refused()
    {
        // The rule names websocket; the upstream switches to something else.
        var r = await Get("/upgrade101/ws", "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==");
        Assert.True(r.Status == 502, r.ToString());
        var line = await f.Gw.WaitForLogAsync(l => (l.Str("request") ?? "").EndsWith("/upgrade101/ws", StringComparison.Ordinal));
        Assert.Equal(502, line.Num("status"));
        Assert.Contains("an upgrade to 'tunnel'", line.Str("reason"));
        // Without a rule that names the upgrade, it never reaches the upstream.
        Assert.Equal(403, (await Get("/x", "Connection: Upgrade", "Upgrade: websocket")).Status);
    }

    [Fact]
    public async Task H2c_upgrades_are_never_forwarded()
    {
        var r = await Http1Response.SendAsync(Site, "GET /recorder/cleartext-upgrade HTTP/1.1", "Host: a", "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA");
        Assert.Equal(200, r.Status);
        Assert.Equal("recorded\n", r.Body);
        var head = f.Recorder.Requests.Last(h => h.Contains("/cleartext-upgrade", StringComparison.Ordinal));
        Assert.DoesNotContain("h2c", head, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("HTTP2-Settings", head, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Forwarded_and_X_Real_IP_from_a_client_are_replaced()
    {
        var r = await Proc.CurlAsync("-H", "Host: site.test", "-H", "Forwarded: for=10.9.9.9;proto=https", "-H", "X-Real-IP: 10.9.9.9",
            "-H", "X-Forwarded-For: 10.9.9.9", $"http://127.0.0.1:{Site}/echo");
        Assert.True(r.ExitCode == 0, r.ToString());
        var headers = Json.Parse(r.Stdout).GetProperty("headers");
        Assert.Equal("for=127.0.0.1;proto=http;host=\"site.test\"", headers.GetProperty("Forwarded").GetString());
        Assert.Equal("127.0.0.1", headers.GetProperty("X-Real-IP").GetString());
        Assert.Equal("127.0.0.1", headers.GetProperty("X-Forwarded-For").GetString());
    }
}
