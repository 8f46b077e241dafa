using System.Net;
using System.Text.Json;
using Bastion.Tests.Infrastructure;
using static Bastion.Tests.Reverse.ReverseRoutingTests;

namespace Bastion.Tests.Admin;

/// <summary>
/// An upstream outage as the issue saw it (a target that refuses, a group with none left: 502s then 503s, a flaky
/// target answering 500s) is visible in /metrics (per target and per listener), /healthz and the dashboard's JSON;
/// the client's pages never name the internal addresses the log names.
/// </summary>
public class UpstreamObservabilityTests
{
    [Fact]
    public async Task An_upstream_outage_shows_in_metrics_healthz_the_dashboard_and_the_log()
    {
        await using var a = await TestOrigin.StartAsync();
        int dead = Wait.FreePort(), gone = Wait.FreePort();
        var dir = Scratch.NewDir("upobs");
        var (crt, key) = TestCerts.WritePem(dir, "site", TestCerts.Localhost());
        await using var gw = await TestGateway.StartAsync($$"""
            admin:
              listen: 127.0.0.1:0
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                routes:
                  - { path: "/web/{**rest}", upstream: web, strip_prefix: /web }
                  - { path: "/gone/{**rest}", upstream: gone, strip_prefix: /gone }
                  - { path: "/flaky/{**rest}", upstream: flaky, strip_prefix: /flaky }
              - name: secure
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                tls: [{ cert: {{crt}}, key: {{key}} }]
                routes:
                  - { path: "/web/{**rest}", upstream: web, strip_prefix: /web }
                  - { path: "/gone/{**rest}", upstream: gone, strip_prefix: /gone }
                  - { path: "/flaky/{**rest}", upstream: flaky, strip_prefix: /flaky }
            upstreams:
              web: { targets: ["http://127.0.0.1:{{dead}}", {{a.Url}}] }
              gone: { targets: ["http://127.0.0.1:{{gone}}"] }
              flaky: { targets: [{{a.Url}}] }
            {{AllowAll}}
            """);
        int admin = gw.Host.Admin!.BoundEndPoint!.Port;
        string site = gw.Url("site");

        var (hs, hb) = await AdminHttp.GetAsync(admin, "/healthz");
        Assert.Equal(HttpStatusCode.OK, hs);
        Assert.StartsWith("ok:", hb);
        Assert.Equal(HttpStatusCode.OK, (await AdminHttp.GetAsync(admin, "/healthz/upstreams")).Status);

        // web: the first request finds the dead target, is sent again to the live one; every answer is a 200.
        var r = await Proc.CurlAsync([.. Enumerable.Repeat($"{site}/web/100b", 6).SelectMany(u => new[] { "-o", "/dev/null", u }), "-w", "%{http_code}\n"]);
        Assert.Equal(Enumerable.Repeat("200", 6), r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        // gone: its only target refuses: 502, then (taken out) 503; neither page names the address.
        var (s502, b502) = await Get($"{site}/gone/100b");
        var (s503, b503) = await Get($"{site}/gone/100b");
        Assert.Equal((502, 503), (s502, s503));
        Assert.DoesNotContain("127.0.0.1", b502);
        Assert.DoesNotContain("127.0.0.1", b503);
        Assert.Contains("no healthy upstream", b503);

        // flaky: half of its answers are 500s (alternating, so passive health keeps it in): degraded by error rate.
        for (int i = 0; i < 6; i++)
        {
            Assert.Equal(500, (await Get($"{site}/flaky/status/500")).Status);
            Assert.Equal(200, (await Get($"{site}/flaky/100b")).Status);
        }

        // HTTP/2 on the TLS listener: the log names the target that served it too.
        var h2 = await Proc.CurlAsync("-k", "--http2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", $"https://127.0.0.1:{gw.Port("secure")}/web/100b");
        Assert.Equal("200 2", h2.Stdout);

        // The log: each request names its target; the failures say where, the pages did not.
        var h2Line = await gw.WaitForLogAsync(l => l.Str("listener") == "secure" && l.Str("event") == "request");
        Assert.Equal(a.Url, h2Line.Str("upstream"));
        var l502 = await gw.WaitForLogAsync(l => l.Num("status") == 502);
        Assert.Equal($"http://127.0.0.1:{gone}", l502.Str("upstream"));
        Assert.Contains($"127.0.0.1:{gone}", l502.Str("reason"));
        var l503 = await gw.WaitForLogAsync(l => l.Num("status") == 503);
        Assert.Contains("'gone'", l503.Str("reason"));
        Assert.All(gw.LogLines().Where(l => l.Str("listener") == "site" && l.Str("request")!.Contains("/web/")),
            l => Assert.Equal(a.Url, l.Str("upstream")));

        // /metrics: per target and per listener.
        var (ms, m) = await AdminHttp.GetAsync(admin, "/metrics");
        Assert.Equal(HttpStatusCode.OK, ms);
        string T(string group, string target) => $"listener=\"site\",upstream=\"{group}\",target=\"{target}\"";
        Assert.Equal(1, AdminHttp.Sample(m, "bastion_upstream_errors_total", T("web", $"http://127.0.0.1:{dead}") + ",kind=\"connect\""));
        Assert.Equal(6, AdminHttp.Sample(m, "bastion_upstream_responses_total", T("web", a.Url) + ",class=\"2xx\""));
        Assert.Equal(7, AdminHttp.Sample(m, "bastion_upstream_requests_total", T("web", a.Url)) + AdminHttp.Sample(m, "bastion_upstream_requests_total", T("web", $"http://127.0.0.1:{dead}")));
        Assert.Equal(0, AdminHttp.Sample(m, "bastion_upstream_up", T("web", $"http://127.0.0.1:{dead}")));
        Assert.Equal(1, AdminHttp.Sample(m, "bastion_upstream_up", T("web", a.Url)));
        Assert.Equal(6, AdminHttp.Sample(m, "bastion_upstream_target_latency_seconds_count", T("web", a.Url)));
        Assert.Equal(1, AdminHttp.Sample(m, "bastion_upstream_unavailable_total", "listener=\"site\",upstream=\"gone\""));
        Assert.Equal(6, AdminHttp.Sample(m, "bastion_upstream_responses_total", T("flaky", a.Url) + ",class=\"5xx\""));
        Assert.Equal(2 + 6, AdminHttp.Sample(m, "bastion_responses_total", "listener=\"site\",class=\"5xx\""));
        Assert.Equal(6 + 6, AdminHttp.Sample(m, "bastion_responses_total", "listener=\"site\",class=\"2xx\""));
        Assert.Equal(1, AdminHttp.Sample(m, "bastion_upstream_responses_total", "listener=\"secure\",upstream=\"web\",target=\"" + a.Url + "\",class=\"2xx\""));
        Assert.Equal(1, AdminHttp.Sum(m, "bastion_build_info"));
        Assert.True(AdminHttp.Sample(m, "process_open_fds") > 0);
        Assert.True(AdminHttp.Sample(m, "process_max_fds") > 0);

        // /healthz: still 200 (the gateway itself is fine) but degraded, naming groups, never addresses.
        (hs, hb) = await AdminHttp.GetAsync(admin, "/healthz");
        Assert.Equal(HttpStatusCode.OK, hs);
        Assert.StartsWith("degraded:", hb);
        Assert.Contains("upstream 'web' of site: 1 of 2 target(s) up", hb);
        Assert.Contains("upstream 'gone' of site: 0 of 1 target(s) up", hb);
        Assert.Contains("upstream 'flaky' of site: 6 of 12 recent requests failed", hb);
        Assert.DoesNotContain("127.0.0.1", hb);
        var (us, ub) = await AdminHttp.GetAsync(admin, "/healthz/upstreams");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, us);
        Assert.StartsWith("degraded:", ub);

        // The dashboard's JSON: groups with their state, targets with health, status classes, errors and latency.
        var stats = await AdminHttp.JsonAsync(admin, "/api/stats");
        var ups = stats.GetProperty("upstreams").EnumerateArray().ToList();
        JsonElement Group(string listener, string name) => ups.Single(g => g.GetProperty("listener").GetString() == listener && g.GetProperty("name").GetString() == name);
        var web = Group("site", "web");
        Assert.Equal("degraded", web.GetProperty("state").GetString());
        var targets = web.GetProperty("targets").EnumerateArray().ToList();
        var deadT = targets.Single(t => t.GetProperty("target").GetString() == $"http://127.0.0.1:{dead}");
        Assert.False(deadT.GetProperty("up").GetBoolean());
        Assert.Equal(1, deadT.GetProperty("errors").GetProperty("connect").GetInt64());
        var liveT = targets.Single(t => t.GetProperty("target").GetString() == a.Url);
        Assert.True(liveT.GetProperty("up").GetBoolean());
        Assert.Equal(6, liveT.GetProperty("responses").GetProperty("2xx").GetInt64());
        Assert.True(liveT.GetProperty("latency_ms_avg").GetDouble() > 0);
        Assert.Equal("down", Group("site", "gone").GetProperty("state").GetString());
        Assert.Equal(1, Group("site", "gone").GetProperty("unavailable").GetInt64());
        Assert.Equal("degraded", Group("site", "flaky").GetProperty("state").GetString());
        Assert.Equal("ok", Group("secure", "flaky").GetProperty("state").GetString());
        var siteListener = stats.GetProperty("listeners").EnumerateArray().Single(l => l.GetProperty("name").GetString() == "site");
        Assert.Equal(8, siteListener.GetProperty("responses").GetProperty("5xx").GetInt64());
    }

    [Fact]
    public async Task Tcp_upstream_targets_are_metered_and_forward_socks_and_tcp_lines_name_their_upstream()
    {
        await using var echo = TcpServer.Echo();
        await using var origin = await TestOrigin.StartAsync();
        int closed = Wait.FreePort();
        await using var gw = await TestGateway.StartAsync($$"""
            admin:
              listen: 127.0.0.1:0
            listeners:
              - { name: db, type: tcp, listen: 127.0.0.1:0, upstream: pool, policy: open }
              - { name: proxy, type: http-proxy, listen: 127.0.0.1:0, policy: open }
              - { name: socks, type: socks5, listen: 127.0.0.1:0, policy: open }
            upstreams:
              pool: { targets: ["127.0.0.1:{{closed}}", "127.0.0.1:{{echo.Port}}"], balance: round-robin }
            {{AllowAll}}
            """);
        int admin = gw.Host.Admin!.BoundEndPoint!.Port;
        for (int i = 0; i < 3; i++)
        {
            using var s = await Sock.ConnectAsync(gw.Port("db"));
            await s.SendAsync("ping\n"u8.ToArray());
            Assert.Equal("ping\n"u8.ToArray(), await s.ReadExactlyAsync(5));
        }
        var tcpLines = await Wait.ForAsync(() =>
        {
            var c = gw.LogLines().Where(l => l.Str("listener") == "db" && l.Str("event") == "connection").ToList();
            return (c.Count == 3, c);
        }, TimeSpan.FromSeconds(20), "three tcp connection lines");
        Assert.All(tcpLines, l => Assert.Equal($"127.0.0.1:{echo.Port}", l.Str("upstream")));

        var m = (await AdminHttp.GetAsync(admin, "/metrics")).Body;
        Assert.Equal(1, AdminHttp.Sample(m, "bastion_upstream_errors_total", $"listener=\"db\",upstream=\"pool\",target=\"127.0.0.1:{closed}\",kind=\"connect\""));
        Assert.Equal(0, AdminHttp.Sample(m, "bastion_upstream_up", $"listener=\"db\",upstream=\"pool\",target=\"127.0.0.1:{closed}\""));
        Assert.Equal(3, AdminHttp.Sample(m, "bastion_upstream_requests_total", $"listener=\"db\",upstream=\"pool\",target=\"127.0.0.1:{echo.Port}\""));
        Assert.Equal(3, AdminHttp.Sample(m, "bastion_upstream_target_latency_seconds_count", $"listener=\"db\",upstream=\"pool\",target=\"127.0.0.1:{echo.Port}\""));
        var (_, health) = await AdminHttp.GetAsync(admin, "/healthz");
        Assert.Contains("upstream 'pool' of db: 1 of 2 target(s) up", health);

        var fwd = await Proc.CurlAsync("-x", $"http://127.0.0.1:{gw.Port("proxy")}", "-o", "/dev/null", "-w", "%{http_code}", $"{origin.Url}/100b");
        Assert.Equal("200", fwd.Stdout);
        var fwdLine = await gw.WaitForLogAsync(l => l.Str("listener") == "proxy" && l.Str("event") == "request");
        Assert.Equal($"127.0.0.1:{origin.Port}", fwdLine.Str("upstream"));

        var socks = await Proc.CurlAsync("--socks5", $"127.0.0.1:{gw.Port("socks")}", "-o", "/dev/null", "-w", "%{http_code}", $"{origin.Url}/100b");
        Assert.Equal("200", socks.Stdout);
        var socksLine = await gw.WaitForLogAsync(l => l.Str("listener") == "socks" && l.Str("event") == "connection");
        Assert.Equal($"127.0.0.1:{origin.Port}", socksLine.Str("upstream"));
    }

    [Fact]
    public async Task A_reload_that_drops_the_dead_target_clears_healthz_without_waiting_for_traffic()
    {
        await using var a = await TestOrigin.StartAsync();
        int dead = Wait.FreePort();
        await using var gw = await TestGateway.StartAsync(AdminConfigs.ReverseSite($"\"http://127.0.0.1:{dead}\", {a.Url}"));
        int admin = gw.Host.Admin!.BoundEndPoint!.Port;
        Assert.Equal(200, (await Get($"{gw.Url("site")}/100b")).Status);
        Assert.StartsWith("degraded:", (await AdminHttp.GetAsync(admin, "/healthz")).Body);

        await File.WriteAllTextAsync(gw.ConfigPath, AdminConfigs.ReverseSite(a.Url));
        Assert.Null(await gw.Host.ReloadAsync("test"));
        var (status, body) = await AdminHttp.GetAsync(admin, "/healthz");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.StartsWith("ok:", body);
        var m = (await AdminHttp.GetAsync(admin, "/metrics")).Body;
        Assert.Null(AdminHttp.Sample(m, "bastion_upstream_up", $"listener=\"site\",upstream=\"web\",target=\"http://127.0.0.1:{dead}\""));
        Assert.Equal(1, AdminHttp.Sample(m, "bastion_upstream_up", $"listener=\"site\",upstream=\"web\",target=\"{a.Url}\""));
    }
}
