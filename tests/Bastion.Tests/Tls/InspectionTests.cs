using System.Text.RegularExpressions;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Tls;

/// <summary>TLS inspection end to end: curl through the gateway trusting the inspection CA, real HTTPS origins.</summary>
public sealed class InspectionTests(InspectionFixture f) : IClassFixture<InspectionFixture>
{
    Task<ProcResult> Curl(TestGateway gw, string url, params string[] extra) =>
        Proc.CurlAsync(["-x", gw.Url("web"), "--cacert", f.CaCert, .. extra, url]);

    static string Issuer(ProcResult r) => Regex.Match(r.Stderr, @"issuer: (.+)").Groups[1].Value;

    [Fact]
    public async Task Requests_inside_an_inspected_tunnel_are_judged_and_logged_like_plain_ones()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var url = $"https://shop.localhost:{f.Origin.Port}/100b";
        var r = await Curl(gw, url, "-v");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(new string('x', 99) + "\n", r.Stdout);
        Assert.Contains("Bastion inspection CA", Issuer(r));

        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"GET {url}");
        Assert.Equal("allow", line.Str("verdict"));
        Assert.Equal("loopback", line.Str("rule"));
        Assert.Equal(200, line.Num("status"));
        Assert.Equal("inspected", line.Str("tls"));
        Assert.Equal("shop.localhost", line.Str("sni"));
        var connect = await gw.WaitForLogAsync(l => l.Str("request") == $"CONNECT shop.localhost:{f.Origin.Port}");
        Assert.Equal("inspected", connect.Str("tls"));
        Assert.Equal("tunnels", connect.Str("rule"));
    }

    [Fact]
    public async Task Keep_alive_requests_in_one_tunnel_each_go_to_their_own_path_and_log_their_own_url()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var origin = $"https://shop.localhost:{f.Origin.Port}";
        int before = f.Origin.Requests;
        // One curl, one tunnel: the same path twice, another, then the first again (the URL and log text are reused
        // while the path stays the same, and must change when it does).
        var r = await Curl(gw, $"{origin}/100b", "-w", "|%{http_code}|%{num_connects}\n", $"{origin}/100b", $"{origin}/echo?x=1", $"{origin}/100b");
        Assert.True(r.ExitCode == 0, r.ToString());
        var codes = Regex.Matches(r.Stdout, @"\|(\d+)\|(\d+)").Select(m => (m.Groups[1].Value, m.Groups[2].Value)).ToList();
        Assert.Equal([("200", "1"), ("200", "0"), ("200", "0"), ("200", "0")], codes);
        Assert.Contains("\"path\":\"/echo\"", r.Stdout);
        Assert.Contains("\"query\":\"?x=1\"", r.Stdout);
        Assert.Equal(before + 4, f.Origin.Requests);
        await gw.WaitForLogAsync(l => l.Str("request") == $"GET {origin}/echo?x=1");
        // The log writer gathers lines: wait for the last one rather than count at once.
        await Wait.UntilAsync(() => gw.LogLines().Count(l => l.Str("request") == $"GET {origin}/100b") == 3, TimeSpan.FromSeconds(10),
            "three log lines for /100b");
    }

    [Theory]
    [InlineData("SHOP.localhost:{port}", 200)]
    [InlineData("shop.localhost", 421)]
    [InlineData("api.localhost:{port}", 421)]
    public async Task The_host_inside_a_tunnel_must_name_the_tunnel_origin(string host, int status)
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var url = $"https://shop.localhost:{f.Origin.Port}/100b";
        var r = await Curl(gw, url, "-H", $"Host: {host.Replace("{port}", f.Origin.Port.ToString())}", "-o", "/dev/null", "-w", "%{http_code}");
        Assert.Equal(status.ToString(), r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"GET {url}");
        Assert.Equal(status, line.Num("status"));
    }

    [Fact]
    public async Task A_path_rule_denies_a_request_inside_the_tunnel()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var url = $"https://shop.localhost:{f.Origin.Port}/secret/plans";
        int before = f.Origin.Requests;
        var r = await Curl(gw, url, "-w", "\n%{http_code}");
        Assert.EndsWith("\n403", r.Stdout);
        Assert.Equal(before, f.Origin.Requests);
        Assert.Contains("secret area", r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"GET {url}");
        Assert.Equal("deny", line.Str("verdict"));
        Assert.Equal("no-secrets", line.Str("rule"));
        Assert.Equal("inspected", line.Str("tls"));
    }

    [Fact]
    public async Task A_content_type_rule_denies_a_response_inside_the_tunnel()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var url = $"https://shop.localhost:{f.Origin.Port}/type/application/x-msdownload";
        var r = await Curl(gw, url, "-w", "\n%{http_code}");
        Assert.EndsWith("\n403", r.Stdout);
        Assert.DoesNotContain("typed body", r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"GET {url}");
        Assert.Equal("no-binaries", line.Str("rule"));
        Assert.Equal("deny", line.Str("verdict"));
    }

    [Fact]
    public async Task A_skipped_host_is_spliced_and_keeps_the_origin_certificate()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var url = $"https://bank.localhost:{f.Origin.Port}/100b";
        var r = await Proc.CurlAsync(["-x", gw.Url("web"), "--cacert", f.OriginCaPem, "-v", url]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("Bastion Tests Origin CA", Issuer(r));
        var connect = await gw.WaitForLogAsync(l => l.Str("request") == $"CONNECT bank.localhost:{f.Origin.Port}");
        Assert.Equal("spliced", connect.Str("tls"));
        Assert.Equal("bank.localhost", connect.Str("sni"));
        Assert.DoesNotContain(gw.LogLines(), l => l.Str("request") == $"GET {url}");
    }

    [Theory]
    [InlineData("expired", "expired on")]
    [InlineData("wrong", "is for other.localhost, not wrong.localhost")]
    public async Task An_origin_with_a_bad_certificate_gets_the_client_an_error_page_naming_the_problem(string kind, string problem)
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var port = kind == "expired" ? f.Expired.Port : f.WrongName.Port;
        var url = $"https://{kind}.localhost:{port}/100b";
        var r = await Curl(gw, url, "-w", "\n%{http_code}");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.EndsWith("\n502", r.Stdout);
        Assert.Contains(problem, r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"GET {url}");
        Assert.Equal(502, line.Num("status"));
        Assert.Contains(problem, line.Str("reason"));
        Assert.Equal(0, (kind == "expired" ? f.Expired : f.WrongName).Requests);
    }

    [Fact]
    public async Task A_client_that_refuses_the_minted_certificate_fails_cleanly_and_is_logged_with_the_alert()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        // No --cacert: curl trusts only the system store, as a pinning client trusts only its pin.
        var r = await Proc.CurlAsync(["-x", gw.Url("web"), $"https://api.localhost:{f.Origin.Port}/100b"]);
        Assert.Equal(60, r.ExitCode);
        var closed = await gw.WaitForLogAsync(l => l.Str("event") == "connection" && (l.Str("reason") ?? "").Contains("refused the minted certificate"));
        Assert.Contains("api.localhost", closed.Str("reason"));
        Assert.Contains("TLS alert 'unknown_ca'", closed.Str("reason"));
        var connect = await gw.WaitForLogAsync(l => l.Str("request") == $"CONNECT api.localhost:{f.Origin.Port}");
        Assert.Equal("inspected", connect.Str("tls"));
        // The gateway is still fine for the next client.
        var ok = await Curl(gw, $"https://api.localhost:{f.Origin.Port}/100b");
        Assert.True(ok.ExitCode == 0, ok.ToString());
    }

    [Fact]
    public async Task Http2_inside_when_client_and_origin_offer_it_with_the_same_rules()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var url = $"https://shop.localhost:{f.Origin.Port}/proto";
        var r = await Curl(gw, url, "--http2", "-w", "%{http_version}");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.True(r.Stdout == "HTTP/2\n2", r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"GET {url}");
        Assert.Equal("inspected", line.Str("tls"));
        Assert.Equal(200, line.Num("status"));

        var denied = await Curl(gw, $"https://shop.localhost:{f.Origin.Port}/secret/x", "--http2", "-w", "\n%{http_code} %{http_version}");
        Assert.EndsWith("\n403 2", denied.Stdout);
        Assert.Contains("secret area", denied.Stdout);
        var binary = await Curl(gw, $"https://shop.localhost:{f.Origin.Port}/type/application/x-msdownload", "--http2", "-w", "\n%{http_code}");
        Assert.EndsWith("\n403", binary.Stdout);
        Assert.DoesNotContain("typed body", binary.Stdout);
        var rule = await gw.WaitForLogAsync(l => l.Str("request") == $"GET https://shop.localhost:{f.Origin.Port}/type/application/x-msdownload");
        Assert.Equal("no-binaries", rule.Str("rule"));

        // HTTP/1.1-only clients get HTTP/1.1 inside, and the origin sees 1.1 too.
        var h1 = await Curl(gw, url, "--http1.1");
        Assert.Equal("HTTP/1.1\n", h1.Stdout);
    }

    [Fact]
    public async Task Non_tls_after_connect_to_an_inspected_host_is_refused()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        using var s = new System.Net.Sockets.TcpClient();
        await s.ConnectAsync(gw.EndPoint("web"));
        var stream = s.GetStream();
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"CONNECT shop.localhost:{f.Origin.Port} HTTP/1.1\r\nHost: shop.localhost\r\n\r\nGET / HTTP/1.1\r\nHost: shop.localhost\r\n\r\n"));
        var buf = new byte[4096];
        var all = new List<byte>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        int n;
        while ((n = await stream.ReadAsync(buf, cts.Token)) > 0) all.AddRange(buf.AsSpan(0, n));
        var text = System.Text.Encoding.ASCII.GetString([.. all]);
        Assert.StartsWith("HTTP/1.1 200", text);
        Assert.DoesNotContain("HTTP/1.1 200 OK", text);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"CONNECT shop.localhost:{f.Origin.Port}");
        Assert.Equal("deny", line.Str("verdict"));
        Assert.Equal("refused", line.Str("tls"));
        Assert.Contains("not TLS", line.Str("reason"));
    }

    [Fact]
    public async Task A_rule_on_sni_judges_the_name_inside_tls()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml(rules: """
                  - deny: { sni: evil.localhost }
                    reason: evil server name
                    name: no-evil
            """));
        // The CONNECT names an allowed host; the ClientHello names another.
        var r = await Proc.RunAsync("openssl", ["s_client", "-proxy", $"127.0.0.1:{gw.Port("web")}", "-connect", $"shop.localhost:{f.Origin.Port}",
            "-servername", "evil.localhost", "-CAfile", f.CaCert], TimeSpan.FromSeconds(20), stdin: "");
        Assert.Contains("no peer certificate available", r.Stdout);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"CONNECT shop.localhost:{f.Origin.Port}");
        Assert.Equal("deny", line.Str("verdict"));
        Assert.Equal("no-evil", line.Str("rule"));
        Assert.Equal("evil.localhost", line.Str("sni"));
    }

    [Fact]
    public async Task Reload_swaps_the_ca_and_drops_minted_certificates()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        var url = $"https://api.localhost:{f.Origin.Port}/100b";
        Assert.Equal(0, (await Curl(gw, url)).ExitCode);
        var second = Path.Combine(gw.Dir, "ca2");
        Bastion.Gateway.Tls.CertificateAuthority.Create(second, rsa: false, []);
        await File.WriteAllTextAsync(gw.ConfigPath, f.Yaml().Replace(f.CaDir, second));
        await gw.Host.ReloadAsync("test");
        var withNew = await Proc.CurlAsync(["-x", gw.Url("web"), "--cacert", Path.Combine(second, "ca.crt"), url]);
        Assert.True(withNew.ExitCode == 0, withNew.ToString());
        var withOld = await Curl(gw, url);
        Assert.Equal(60, withOld.ExitCode);
    }

    [Fact]
    public async Task Metrics_stats_and_config_show_inspected_and_spliced_tunnels()
    {
        await using var gw = await TestGateway.StartAsync("admin:\n  listen: 127.0.0.1:0\n" + f.Yaml());
        Assert.Equal(0, (await Curl(gw, $"https://shop.localhost:{f.Origin.Port}/100b")).ExitCode);
        Assert.Equal(0, (await Proc.CurlAsync(["-x", gw.Url("web"), "--cacert", f.OriginCaPem, $"https://bank.localhost:{f.Origin.Port}/100b"])).ExitCode);
        await gw.WaitForLogAsync(l => l.Str("event") == "connection" && l.Str("request") == $"CONNECT bank.localhost:{f.Origin.Port}");
        var admin = gw.Host.Admin!.BoundEndPoint!.Port;

        var metrics = (await Admin.AdminHttp.GetAsync(admin, "/metrics")).Body;
        Assert.Equal(1, Admin.AdminHttp.Sample(metrics, "bastion_tls_tunnels_total", "listener=\"web\",mode=\"inspected\""));
        Assert.Equal(1, Admin.AdminHttp.Sample(metrics, "bastion_tls_tunnels_total", "listener=\"web\",mode=\"spliced\""));
        Assert.Equal(1, Admin.AdminHttp.Sample(metrics, "bastion_tls_mint_seconds_count", "listener=\"web\""));

        var stats = await Admin.AdminHttp.JsonAsync(admin, "/api/stats");
        var web = stats.GetProperty("listeners").EnumerateArray().Single(l => l.GetProperty("name").GetString() == "web");
        Assert.Equal(1, web.GetProperty("tls").GetProperty("inspected").GetInt64());
        Assert.Equal(1, web.GetProperty("tls").GetProperty("spliced").GetInt64());

        var config = (await Admin.AdminHttp.GetAsync(admin, "/api/config")).Body;
        Assert.Contains("\"tls_inspection\"", config);
        Assert.Contains("bank.localhost", config);
        Assert.DoesNotContain("PRIVATE KEY", config);
    }

    [Fact]
    public async Task A_connect_denied_by_default_is_allowed_by_a_rule_on_its_server_name()
    {
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: web
                type: http-proxy
                listen: 127.0.0.1:0
                policy: by-name
                tls_inspection: { ca: {{f.CaDir}}, upstream_ca: {{f.OriginCaPem}} }
            policies:
              by-name:
                default: deny
                rules:
                  - allow: { sni: shop.localhost }
                    name: shop-only
            """);
        int before = f.Origin.Requests;
        var ok = await Curl(gw, $"https://shop.localhost:{f.Origin.Port}/100b");
        Assert.True(ok.ExitCode == 0, ok.ToString());
        var inside = await gw.WaitForLogAsync(l => l.Str("request") == $"GET https://shop.localhost:{f.Origin.Port}/100b");
        Assert.Equal("shop-only", inside.Str("rule"));

        // Another name: the tunnel closes after the ClientHello, and the origin is never connected to.
        var denied = await Curl(gw, $"https://api.localhost:{f.Origin.Port}/100b");
        Assert.NotEqual(0, denied.ExitCode);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"CONNECT api.localhost:{f.Origin.Port}");
        Assert.Equal("deny", line.Str("verdict"));
        Assert.Equal("by-name#default", line.Str("rule"));
        Assert.Equal("api.localhost", line.Str("sni"));
        Assert.Equal(before + 1, f.Origin.Requests);
    }

    [Fact]
    public async Task A_websocket_inside_an_inspected_tunnel_is_judged_then_relayed_both_ways()
    {
        // Only a rule that names the upgrade opens a tunnel inside the tunnel (docs/policy.md).
        await using var gw = await TestGateway.StartAsync(f.Yaml(rules: """
                  - allow: { path: /ws, upgrade: websocket }
                    name: websockets
            """));
        var ca = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificateFromFile(f.CaCert);
        System.Net.WebSockets.ClientWebSocket Client()
        {
            var c = new System.Net.WebSockets.ClientWebSocket();
            c.Options.Proxy = new System.Net.WebProxy(gw.Url("web"));
            c.Options.RemoteCertificateValidationCallback = Trusted;
            return c;
        }
        bool Trusted(object _, System.Security.Cryptography.X509Certificates.X509Certificate? cert, System.Security.Cryptography.X509Certificates.X509Chain? __, System.Net.Security.SslPolicyErrors errors)
        {
            // Trust exactly the inspection CA, as a client with it installed would.
            if (cert is null || (errors & ~System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors) != 0) return false;
            using var chain = new System.Security.Cryptography.X509Certificates.X509Chain();
            chain.ChainPolicy.TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck;
            return chain.Build(new System.Security.Cryptography.X509Certificates.X509Certificate2(cert));
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using (var refused = Client())
        {
            // The same upgrade on another path is allowed only by the general `loopback` rule: refused.
            var e = await Assert.ThrowsAsync<System.Net.WebSockets.WebSocketException>(() => refused.ConnectAsync(new Uri($"wss://shop.localhost:{f.Origin.Port}/ws2"), cts.Token));
            Assert.Contains("403", e.Message);
        }
        using var ws = Client();
        await ws.ConnectAsync(new Uri($"wss://shop.localhost:{f.Origin.Port}/ws"), cts.Token);
        var recv = new byte[16 * 1024];
        for (int i = 0; i < 3; i++)
        {
            var msg = System.Text.Encoding.UTF8.GetBytes($"inspected {i} " + new string('x', i * 3000));
            await ws.SendAsync(msg, System.Net.WebSockets.WebSocketMessageType.Text, true, cts.Token);
            int got = 0;
            System.Net.WebSockets.WebSocketReceiveResult r;
            do
            {
                r = await ws.ReceiveAsync(new ArraySegment<byte>(recv, got, recv.Length - got), cts.Token);
                got += r.Count;
            }
            while (!r.EndOfMessage);
            Assert.Equal(msg, recv[..got]);
        }
        await ws.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "done", cts.Token);
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"GET https://shop.localhost:{f.Origin.Port}/ws" && l.Str("event") == "request");
        Assert.Equal(101, line.Num("status"));
        Assert.Equal("inspected", line.Str("tls"));
        Assert.Equal("websockets", line.Str("rule"));
        var closed = await gw.WaitForLogAsync(l => l.Str("request") == $"GET https://shop.localhost:{f.Origin.Port}/ws" && l.Str("event") == "transfer");
        Assert.True(closed.Num("bytes_in") > 0 && closed.Num("bytes_out") > 0, closed.ToString());
    }
}
