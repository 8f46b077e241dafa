using System.Net;
using System.Text.Json;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Admin;

public sealed class AdminOriginFixture : IAsyncLifetime
{
    public TestOrigin Origin { get; private set; } = null!;
    public TcpServer Echo { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Origin = await TestOrigin.StartAsync();
        Echo = TcpServer.Echo();
    }

    public async Task DisposeAsync()
    {
        await Origin.DisposeAsync();
        await Echo.DisposeAsync();
    }
}

static class AdminConfigs
{
    /// <summary>The admin listener and a reverse proxy `site` sending every path to the group `web`.</summary>
    public static string ReverseSite(string webTargets) => $$"""
        admin:
          listen: 127.0.0.1:0
        listeners:
          - name: site
            type: http-reverse
            listen: 127.0.0.1:0
            policy: open
            routes:
              - { path: "/{**rest}", upstream: web }
        upstreams:
          web: { targets: [{{webTargets}}] }
        policies:
          open: { default: deny, rules: [{ allow: {} }] }
        """;

    /// <summary>
    /// A forward proxy and the admin listener. v1 allows tunnels and loopback web traffic; v2 (the "switched" rules
    /// a reload brings in) denies /100b and, by dropping the tunnel rule, new CONNECTs.
    /// </summary>
    public static string Proxy(bool switched = false, string admin = "admin:\n  listen: 127.0.0.1:0\n", string extra = "") => $$"""
        {{admin}}lists:
          blocked: [blocked.test]
        listeners:
          - name: web
            type: http-proxy
            listen: 127.0.0.1:0
            policy: out
            limits: { drain_timeout: 2s }
        {{extra}}
        policies:
          out:
            default: deny
            rules:
              - name: no-blocked
                deny: { host: "@blocked" }
                reason: blocked domain
        {{(switched ? """
              - name: no-100b
                deny: { path: /100b }
                reason: switched off by reload
        """ : """
              - name: tunnels
                allow: { method: CONNECT }
        """)}}
              - name: loopback
                allow: { source: 127.0.0.0/8, not: { method: CONNECT } }
        """;
}

public sealed class AdminApiTests(AdminOriginFixture f) : IClassFixture<AdminOriginFixture>
{
    static int AdminPort(TestGateway gw) => gw.Host.Admin!.BoundEndPoint!.Port;

    [Fact]
    public async Task Metrics_and_stats_move_with_real_traffic()
    {
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        var admin = AdminPort(gw);
        var before = (await AdminHttp.GetAsync(admin, "/metrics")).Body;
        Assert.Equal(0, AdminHttp.Sum(before, "bastion_decisions_total", "listener=\"web\""));

        for (int i = 0; i < 3; i++)
            Assert.Equal(0, (await Proc.CurlAsync("-f", "-o", "/dev/null", "-x", gw.Url("web"), $"{f.Origin.Url}/bytes/5000")).ExitCode);
        var denied = await Proc.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", "-x", gw.Url("web"), "http://blocked.test/x");
        Assert.Equal("403", denied.Stdout);
        await gw.WaitForLogAsync(l => l.Str("verdict") == "deny" && l.Str("rule") == "no-blocked");
        await Wait.UntilAsync(() => gw.Host.Connections.Count == 0, TimeSpan.FromSeconds(10), "connections to close");

        var (status, metrics) = await AdminHttp.GetAsync(admin, "/metrics");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(3, AdminHttp.Sum(metrics, "bastion_decisions_total", "listener=\"web\"", "verdict=\"allow\"", "rule=\"loopback\""));
        Assert.Equal(1, AdminHttp.Sum(metrics, "bastion_decisions_total", "listener=\"web\"", "verdict=\"deny\"", "rule=\"no-blocked\""));
        Assert.True(AdminHttp.Sum(metrics, "bastion_bytes_total", "listener=\"web\"", "direction=\"out\"") >= 15000, metrics);
        Assert.True(AdminHttp.Sum(metrics, "bastion_bytes_total", "listener=\"web\"", "direction=\"in\"") > 0);
        Assert.Equal(4, AdminHttp.Sum(metrics, "bastion_connections_total", "listener=\"web\""));
        Assert.Equal(0, AdminHttp.Sum(metrics, "bastion_connections_active", "listener=\"web\""));
        Assert.Equal(3, AdminHttp.Sum(metrics, "bastion_upstream_latency_seconds_count", "listener=\"web\""));
        Assert.Equal(1, AdminHttp.Sample(metrics, "bastion_listener_up", "listener=\"web\",type=\"http-proxy\""));
        Assert.Equal(1, AdminHttp.Sample(metrics, "bastion_config_generation"));
        Assert.NotNull(AdminHttp.Sample(metrics, "bastion_access_log_dropped_total"));
        Assert.NotNull(AdminHttp.Sample(metrics, "process_cpu_seconds_total"));

        var stats = await AdminHttp.JsonAsync(admin, "/api/stats");
        var totals = stats.GetProperty("totals");
        Assert.Equal(3, totals.GetProperty("allow").GetInt64());
        Assert.Equal(1, totals.GetProperty("deny").GetInt64());
        Assert.True(totals.GetProperty("bytes_out").GetInt64() >= 15000);
        var web = stats.GetProperty("listeners").EnumerateArray().Single(l => l.GetProperty("name").GetString() == "web");
        Assert.Equal("up", web.GetProperty("state").GetString());
        Assert.Equal("http-proxy", web.GetProperty("type").GetString());
        Assert.Equal($"127.0.0.1:{gw.Port("web")}", web.GetProperty("bound").GetString());
        Assert.Equal(4, web.GetProperty("accepted").GetInt64());
        Assert.Contains(stats.GetProperty("rules").EnumerateArray(), r => r.GetProperty("rule").GetString() == "loopback" && r.GetProperty("count").GetInt64() == 3);

        // The traffic history carries what just happened (sampled now rather than waiting for the timer).
        gw.Host.Admin!.History.Sample();
        var samples = (await AdminHttp.JsonAsync(admin, "/api/stats")).GetProperty("traffic").GetProperty("samples");
        Assert.True(samples.EnumerateArray().Sum(s => s[2].GetInt64()) >= 15000);
        Assert.Equal(3, samples.EnumerateArray().Sum(s => s[3].GetInt64()));
        Assert.Equal(1, samples.EnumerateArray().Sum(s => s[4].GetInt64()));
        var last = samples.EnumerateArray().Last()[0].GetInt64();
        // `since` returns only newer samples (the 1 s timer may have added one meanwhile).
        Assert.All((await AdminHttp.JsonAsync(admin, $"/api/stats?since={last}")).GetProperty("traffic").GetProperty("samples").EnumerateArray(),
            s => Assert.True(s[0].GetInt64() > last));
        Assert.Empty((await AdminHttp.JsonAsync(admin, $"/api/stats?since={last + 3_600_000}")).GetProperty("traffic").GetProperty("samples").EnumerateArray());

        var denials = (await AdminHttp.JsonAsync(admin, "/api/denials")).GetProperty("denials");
        var d = Assert.Single(denials.EnumerateArray());
        Assert.Equal("no-blocked", d.GetProperty("rule").GetString());
        Assert.Equal("blocked domain", d.GetProperty("reason").GetString());
        Assert.Equal("GET http://blocked.test/x", d.GetProperty("request").GetString());
        Assert.Equal("web", d.GetProperty("listener").GetString());
    }

    [Fact]
    public async Task Connections_api_lists_a_held_open_tunnel()
    {
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        var admin = AdminPort(gw);
        using var tunnel = await RawClient.ConnectAsync(gw.Port("web"));
        await tunnel.SendAsync($"CONNECT 127.0.0.1:{f.Echo.Port} HTTP/1.1\r\nHost: 127.0.0.1:{f.Echo.Port}\r\nUser-Agent: admin-test\r\n\r\n");
        Assert.Equal(200, (await tunnel.ReadResponseAsync(connect: true)).Status);
        Assert.Equal("ping\n", await tunnel.EchoAsync("ping\n"));

        var list = await AdminHttp.JsonAsync(admin, "/api/connections");
        Assert.Equal(1, list.GetProperty("count").GetInt32());
        var c = list.GetProperty("connections")[0];
        Assert.Equal("web", c.GetProperty("listener").GetString());
        Assert.Equal("http-proxy", c.GetProperty("type").GetString());
        Assert.Equal($"127.0.0.1:{f.Echo.Port}", c.GetProperty("target").GetString());
        Assert.StartsWith("127.0.0.1:", c.GetProperty("client").GetString());
        Assert.True(c.GetProperty("age_s").GetDouble() >= 0);
        Assert.False(string.IsNullOrEmpty(c.GetProperty("id").GetString()));
        await Wait.ForAsync(() =>
        {
            var conn = gw.Host.Connections.All.Single();
            return (Interlocked.Read(ref conn.BytesIn) >= 5 && Interlocked.Read(ref conn.BytesOut) >= 5, true);
        }, TimeSpan.FromSeconds(5), "tunnel byte counts");
        c = (await AdminHttp.JsonAsync(admin, "/api/connections")).GetProperty("connections")[0];
        Assert.True(c.GetProperty("bytes_out").GetInt64() >= 5);

        var stats = await AdminHttp.JsonAsync(admin, "/api/stats");
        Assert.Equal(1, stats.GetProperty("totals").GetProperty("active").GetInt32());

        tunnel.Dispose();
        await Wait.UntilAsync(() => gw.Host.Connections.Count == 0, TimeSpan.FromSeconds(10), "tunnel to close");
        Assert.Equal(0, (await AdminHttp.JsonAsync(admin, "/api/connections")).GetProperty("count").GetInt32());
    }

    [Fact]
    public async Task Healthz_reports_listeners_down_and_readyz_reports_draining()
    {
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy(extra: """
              - name: second
                type: http-proxy
                listen: 127.0.0.1:0
                policy: out
            """));
        var admin = AdminPort(gw);
        var (status, body) = await AdminHttp.GetAsync(admin, "/healthz");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("2 listener(s) up", body);
        Assert.Equal(HttpStatusCode.OK, (await AdminHttp.GetAsync(admin, "/readyz")).Status);

        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1)))
            await gw.Host.Listener("second").StopAsync(cts.Token);
        (status, body) = await AdminHttp.GetAsync(admin, "/healthz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Contains("second", body);
        Assert.DoesNotContain("web", body);
        var metrics = (await AdminHttp.GetAsync(admin, "/metrics")).Body;
        Assert.Equal(0, AdminHttp.Sample(metrics, "bastion_listener_up", "listener=\"second\",type=\"http-proxy\""));
        Assert.Equal(1, AdminHttp.Sample(metrics, "bastion_listener_up", "listener=\"web\",type=\"http-proxy\""));
    }

    [Fact]
    public async Task Token_guards_everything_but_healthz_and_the_page()
    {
        var files = new Dictionary<string, string>
        {
            ["admin.token"] = "s3cret-token-value\n",
            ["users.htpasswd"] = $"alice:{Bastion.Identity.Htpasswd.HashBcrypt("pw", 4)}\n",
        };
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy(admin: """
            admin:
              listen: 127.0.0.1:0
              token_file: admin.token
            identity:
              users: users.htpasswd

            """), files);
        var admin = AdminPort(gw);
        foreach (var path in new[] { "/metrics", "/api/stats", "/api/connections", "/api/config", "/api/denials", "/readyz" })
        {
            var (s, _) = await AdminHttp.GetAsync(admin, path);
            Assert.True(s == HttpStatusCode.Unauthorized, $"{path} without token: {s}");
            (s, _) = await AdminHttp.GetAsync(admin, path, token: "s3cret-token-valuX");
            Assert.True(s == HttpStatusCode.Unauthorized, $"{path} with a wrong token: {s}");
            (s, _) = await AdminHttp.GetAsync(admin, path, token: "s3cret-token-value");
            Assert.True(s == HttpStatusCode.OK, $"{path} with the token: {s}");
        }
        Assert.Equal(HttpStatusCode.OK, (await AdminHttp.GetAsync(admin, "/healthz")).Status);
        var (ps, page) = await AdminHttp.GetAsync(admin, "/");
        Assert.Equal(HttpStatusCode.OK, ps);
        Assert.Contains("<title>Bastion", page);

        // The effective config names the secret files but never shows what is in them.
        var (_, config) = await AdminHttp.GetAsync(admin, "/api/config", token: "s3cret-token-value");
        Assert.DoesNotContain("s3cret", config);
        Assert.DoesNotContain("$2y$", config);
        var doc = JsonDocument.Parse(config).RootElement;
        Assert.EndsWith("admin.token", doc.GetProperty("admin").GetProperty("token_file").GetString());
        Assert.Equal(1, doc.GetProperty("identity").GetProperty("user_count").GetInt32());
        Assert.Equal("web", doc.GetProperty("listeners")[0].GetProperty("name").GetString());
        var rules = doc.GetProperty("policies").GetProperty("out").GetProperty("rules");
        Assert.Equal("no-blocked", rules[0].GetProperty("name").GetString());
        Assert.Equal("@blocked", rules[0].GetProperty("deny").GetProperty("host")[0].GetString());

        var metrics = (await AdminHttp.GetAsync(admin, "/metrics", token: "s3cret-token-value")).Body;
        Assert.True(AdminHttp.Sum(metrics, "bastion_admin_requests_total", "code=\"401\"") >= 12);
    }

    [Fact]
    public async Task Admin_refuses_foreign_host_names_and_unknown_methods()
    {
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        var admin = AdminPort(gw);
        // DNS rebinding: a name that resolves to loopback must not give a web page the API.
        Assert.Equal(HttpStatusCode.MisdirectedRequest, (await AdminHttp.GetAsync(admin, "/api/config", host: "evil.example")).Status);
        Assert.Equal(HttpStatusCode.OK, (await AdminHttp.GetAsync(admin, "/api/config", host: "localhost")).Status);
        var del = await Proc.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", $"http://127.0.0.1:{admin}/api/stats");
        Assert.Equal("405", del.Stdout);
        Assert.Equal(HttpStatusCode.NotFound, (await AdminHttp.GetAsync(admin, "/nope")).Status);
    }
}
