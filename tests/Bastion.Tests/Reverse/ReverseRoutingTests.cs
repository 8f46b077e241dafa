using System.Text.Json;
using Bastion.Gateway;
using Bastion.Protocols.HttpReverse;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Reverse;

/// <summary>Routing by host and path, X-Forwarded-*, prefix rewriting, 404 without a catch-all, reload of routes.</summary>
public class ReverseRoutingTests
{
    internal const string AllowAll = """
        policies:
          open:
            default: deny
            rules:
              - allow: {}
        """;

    internal static async Task<(int Status, string Body)> Get(string url, params string[] extra)
    {
        var r = await Proc.CurlAsync([.. extra, "-o", "-", "-w", "\n%{http_code}", url]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var text = r.Stdout;
        int nl = text.LastIndexOf('\n');
        return (int.Parse(text[(nl + 1)..]), text[..nl]);
    }

    [Fact]
    public async Task Routes_by_host_and_path_most_specific_first()
    {
        await using var api = await TestOrigin.StartAsync();
        await using var wild = await TestOrigin.StartAsync();
        await using var web = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                via: true
                routes:
                  - { path: "/{**rest}", upstream: web }
                  - { host: "*.example.test", upstream: {{wild.Url}} }
                  - { host: app.example.test, path: "/api/{**rest}", upstream: api, strip_prefix: /api, rewrite_prefix: /echo }
                  - { host: app.example.test, path: "/{**rest}", upstream: web }
            upstreams:
              api: { targets: [{{api.Url}}] }
              web: { targets: ["127.0.0.1:{{web.Port}}"] }
            {{AllowAll}}
            """);
        var url = gw.Url("site");

        // Exact host + /api prefix: stripped, rewritten to /echo on the api origin.
        var (status, body) = await Get($"{url}/api?q=1", "-H", "Host: App.Example.Test");
        Assert.Equal(200, status);
        var echo = Json.Parse(body);
        Assert.Equal("/echo", echo.GetProperty("path").GetString());
        Assert.Equal("?q=1", echo.GetProperty("query").GetString());
        var headers = echo.GetProperty("headers");
        Assert.Equal("127.0.0.1", headers.GetProperty("X-Forwarded-For").GetString());
        Assert.Equal("http", headers.GetProperty("X-Forwarded-Proto").GetString());
        Assert.Equal("App.Example.Test", headers.GetProperty("X-Forwarded-Host").GetString());
        Assert.Equal($"127.0.0.1:{api.Port}", headers.GetProperty("Host").GetString());
        Assert.Equal("1.1 bastion", headers.GetProperty("Via").GetString());
        Assert.Equal(1, api.Requests);

        // Same host, other path: the exact-host catch-all, not the wildcard.
        Assert.Equal(200, (await Get($"{url}/100b", "-H", "Host: app.example.test")).Status);
        Assert.Equal(1, web.Requests);
        Assert.Equal(0, wild.Requests);

        // A subdomain: the wildcard route beats the host-less catch-all.
        Assert.Equal(200, (await Get($"{url}/100b", "-H", "Host: other.example.test")).Status);
        Assert.Equal(1, wild.Requests);

        // The bare domain is not a subdomain: catch-all.
        Assert.Equal(200, (await Get($"{url}/100b", "-H", "Host: example.test")).Status);
        Assert.Equal(2, web.Requests);

        var line = await gw.WaitForLogAsync(l => l.Str("request")?.Contains("/api?q=1") == true);
        Assert.Equal("allow", line.Str("verdict"));
        Assert.Equal(200, line.Num("status"));
        Assert.Equal("http-reverse", line.Str("type"));
        Assert.StartsWith("127.0.0.1:", line.Str("client"));
    }

    [Fact]
    public async Task Unknown_host_without_catch_all_is_404_and_client_forwarded_headers_are_replaced()
    {
        await using var o = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                routes:
                  - { host: only.test, path: /echo, upstream: {{o.Url}}, method: [GET, POST] }
                  - { host: only.test, path: /echo, upstream: {{o.Url}}, method: GET, headers: { X-Beta: "yes*" }, strip_prefix: /echo, rewrite_prefix: /status/201 }
            {{AllowAll}}
            """);
        var url = gw.Url("site");
        var (status, body) = await Get($"{url}/echo", "-H", "Host: nope.test");
        Assert.Equal(404, status);
        Assert.Contains("no route", body);
        Assert.Equal(404, (await Get($"{url}/other", "-H", "Host: only.test")).Status);
        // Method not in the route: no match.
        Assert.Equal(404, (await Get($"{url}/echo", "-X", "DELETE", "-H", "Host: only.test")).Status);
        // Method and header: more specific than method alone.
        Assert.Equal(201, (await Get($"{url}/echo", "-H", "Host: only.test", "-H", "X-Beta: yes-please")).Status);

        // Not a trusted proxy: what the client claims is replaced.
        (status, body) = await Get($"{url}/echo", "-H", "Host: only.test", "-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Forwarded-Proto: https");
        Assert.Equal(200, status);
        var h = Json.Parse(body).GetProperty("headers");
        Assert.Equal("127.0.0.1", h.GetProperty("X-Forwarded-For").GetString());
        Assert.Equal("http", h.GetProperty("X-Forwarded-Proto").GetString());
        Assert.False(h.TryGetProperty("Via", out _));
        var line = await gw.WaitForLogAsync(l => l.Num("status") == 404);
        Assert.Equal("allow", line.Str("verdict"));
        Assert.Equal("no route", line.Str("reason"));
    }

    [Fact]
    public async Task Trusted_proxy_forwarded_headers_are_appended()
    {
        await using var o = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                trusted_proxies: [127.0.0.0/8]
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            {{AllowAll}}
            """);
        var (status, body) = await Get($"{gw.Url("site")}/echo", "-H", "X-Forwarded-For: 203.0.113.9", "-H", "X-Forwarded-Proto: https");
        Assert.Equal(200, status);
        var h = Json.Parse(body).GetProperty("headers");
        Assert.Equal("203.0.113.9, 127.0.0.1", h.GetProperty("X-Forwarded-For").GetString());
        Assert.Equal("https, http", h.GetProperty("X-Forwarded-Proto").GetString());
    }

    [Fact]
    public async Task Proxy_protocol_from_a_trusted_front_names_the_client()
    {
        await using var o = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: from-lb
                accept_proxy_protocol: [127.0.0.1]
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            policies:
              from-lb:
                rules:
                  - allow: { source: 203.0.113.0/24 }
            """);
        int port = gw.Port("site");
        var ok = await Raw.ExchangeAsync(port, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nGET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", ok);
        Assert.Contains("\"X-Forwarded-For\":\"203.0.113.7\"", ok);
        await gw.WaitForLogAsync(l => l.Str("client") == "203.0.113.7:5555" && l.Num("status") == 200);

        // v2 too; and a trusted front that sends no header is refused.
        var v2 = Bastion.Gateway.ProxyProtocol.BuildV2(new(System.Net.IPAddress.Parse("203.0.113.8"), 6000), new(System.Net.IPAddress.Loopback, port));
        var ok2 = await Raw.ExchangeAsync(port, System.Text.Encoding.Latin1.GetString(v2) + "GET /100b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", ok2);
        var bad = await Raw.ExchangeAsync(port, "GET /100b HTTP/1.1\r\nHost: x\r\n\r\n");
        Assert.DoesNotContain("200", bad);
        var line = await gw.WaitForLogAsync(l => l.Str("rule") == "accept_proxy_protocol");
        Assert.Equal("deny", line.Str("verdict"));
    }

    [Fact]
    public async Task Reload_swaps_routes_without_restarting_the_listener()
    {
        await using var a = await TestOrigin.StartAsync();
        await using var b = await TestOrigin.StartAsync();
        string Config(TestOrigin o) => $$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            {{AllowAll}}
            """;
        await using var gw = await TestGateway.StartAsync(Config(a));
        var listener = gw.Host.Listener("site");
        var url = gw.Url("site");
        Assert.Equal(200, (await Get($"{url}/100b")).Status);
        Assert.Equal(1, a.Requests);

        var yaml = File.ReadAllText(gw.ConfigPath).Replace(a.Url, b.Url);
        await File.WriteAllTextAsync(gw.ConfigPath, yaml);
        Assert.Null(await gw.Host.ReloadAsync());
        Assert.Same(listener, gw.Host.Listener("site"));
        Assert.Equal(200, (await Get($"{url}/100b")).Status);
        Assert.Equal(1, b.Requests);
        Assert.Equal(1, a.Requests);
        Assert.IsType<ReverseProxyListener>(listener);
    }

    [Fact]
    public async Task Bad_routes_are_reported_with_their_position()
    {
        // A bad template or prefix is reported with its position.
        var bad = Path.Combine(Scratch.NewDir("chk"), "bad.yaml");
        await File.WriteAllTextAsync(bad, """
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                trusted_proxies: [10.0.0.0/33]
                routes:
                  - { path: "/a/{**rest}/b", upstream: "http://127.0.0.1:1", strip_prefix: api }
            """);
        var r = await Proc.BastionAsync(["check", "-c", bad]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("bad.yaml:7:", r.Stdout + r.Stderr);
        Assert.Contains("catch-all", r.Stdout + r.Stderr);
        Assert.Contains("strip_prefix", r.Stdout + r.Stderr);
        Assert.Contains("10.0.0.0/33", r.Stdout + r.Stderr);
    }

    internal static JsonElement Headers(string body) => Json.Parse(body).GetProperty("headers");

    [Fact]
    public async Task Preserve_host_sends_the_clients_host_upstream_on_http1_and_http2()
    {
        await using var o = await TestOrigin.StartAsync();
        var dir = Scratch.NewDir("preserve");
        var (crt, key) = TestCerts.WritePem(dir, "site", TestCerts.Make("app.example.test", ["app.example.test"]));
        const string routes = """
                routes:
                  - { path: "/own/{**rest}", upstream: keep, strip_prefix: /own, preserve_host: false }
                  - { path: "/{**rest}", upstream: keep }
            """;
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
            {{routes}}
              - name: secure
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                tls: [{ cert: {{crt}}, key: {{key}} }]
            {{routes}}
            upstreams:
              keep: { targets: [{{o.Url}}], preserve_host: true }
            {{AllowAll}}
            """);
        // The group says preserve_host: the client's Host goes upstream.
        var (status, body) = await Get($"{gw.Url("site")}/echo", "-H", "Host: App.Example.Test:8443");
        Assert.Equal(200, status);
        Assert.Equal("App.Example.Test:8443", Headers(body).GetProperty("Host").GetString());
        // A route saying preserve_host: false wins over its group: the target's own name.
        (status, body) = await Get($"{gw.Url("site")}/own/echo", "-H", "Host: app.example.test");
        Assert.Equal(200, status);
        Assert.Equal($"127.0.0.1:{o.Port}", Headers(body).GetProperty("Host").GetString());
        Assert.Equal("app.example.test", Headers(body).GetProperty("X-Forwarded-Host").GetString());

        // HTTP/2 (YARP's path): :authority becomes the upstream's Host.
        int port = gw.Port("secure");
        var h2 = await Proc.CurlAsync("--http2", "--cacert", crt, "--resolve", $"app.example.test:{port}:127.0.0.1", "-w", "\n%{http_version}",
            $"https://app.example.test:{port}/echo");
        var lines = h2.Stdout.Split('\n');
        Assert.Equal("2", lines[^1]);
        Assert.Equal($"app.example.test:{port}", Headers(lines[0]).GetProperty("Host").GetString());
    }
}
