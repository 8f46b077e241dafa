using Bastion.Protocols.HttpReverse;
using Bastion.Tests.Infrastructure;
using static Bastion.Tests.Reverse.ReverseRoutingTests;

namespace Bastion.Tests.Reverse;

/// <summary>Load balancing spread, active health-check failover, passive health, all targets down.</summary>
public class ReverseBalancingTests
{
    static async Task<TestGateway> Gateway(string balance, IEnumerable<TestOrigin> origins, string health = "") =>
        await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                routes:
                  - { path: "/{**rest}", upstream: pool }
            upstreams:
              pool:
                targets: [{{string.Join(", ", origins.Select(o => o.Url))}}]
                balance: {{balance}}
                {{health}}
            {{AllowAll}}
            """);

    static UpstreamGroup Pool(TestGateway gw) => ((ReverseProxyListener)gw.Host.Listener("site")).Upstreams["pool"];

    [Theory]
    [InlineData("round-robin")]
    [InlineData("least-requests")]
    [InlineData("power-of-two")]
    [InlineData("random")]
    public async Task Requests_spread_across_targets(string balance)
    {
        var origins = new[] { await TestOrigin.StartAsync(), await TestOrigin.StartAsync(), await TestOrigin.StartAsync() };
        try
        {
            await using var gw = await Gateway(balance, origins);
            const int n = 45;
            // One curl, many requests over keep-alive connections: quick, and the gateway sees them one by one.
            var urls = Enumerable.Repeat($"{gw.Url("site")}/100b", n).ToArray();
            var r = await Proc.CurlAsync([.. urls.SelectMany(u => new[] { "-o", "/dev/null", u }), "-w", "%{http_code}\n"]);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal(n, r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(s => s == "200"));
            Assert.Equal(n, origins.Sum(o => o.Requests));
            if (balance == "round-robin")
                Assert.All(origins, o => Assert.Equal(n / 3, o.Requests));
            else
                Assert.All(origins, o => Assert.True(o.Requests > 0, $"{balance}: an origin got no request ({string.Join(",", origins.Select(x => x.Requests))})"));
        }
        finally
        {
            foreach (var o in origins) await o.DisposeAsync();
        }
    }

    [Fact]
    public async Task Active_health_check_takes_a_stopped_target_out_and_all_down_is_503()
    {
        var a = await TestOrigin.StartAsync();
        var b = await TestOrigin.StartAsync();
        try
        {
            await using var gw = await Gateway("round-robin", [a, b],
                "health: { path: /100b, interval: 100ms, timeout: 1s, fails: 1, passes: 1 }");
            var pool = Pool(gw);
            await Wait.UntilAsync(() => pool.HealthRounds >= 1, TimeSpan.FromSeconds(10), "first health round");
            Assert.All(pool.Targets, t => Assert.True(t.ActiveUp));

            await b.DisposeAsync();
            var bTarget = pool.Targets.Single(t => t.Prefix == b.Url);
            await Wait.UntilAsync(() => !bTarget.ActiveUp, TimeSpan.FromSeconds(10), "stopped origin marked down");

            // Every request lands on the origin still running (health checks count too, so look at who answered).
            var urls = Enumerable.Repeat($"{gw.Url("site")}/echo", 10);
            var r = await Proc.CurlAsync([.. urls, "-w", "\n%{http_code}\n"]);
            var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(20, lines.Length);
            for (int i = 0; i < 10; i++)
            {
                Assert.Equal("200", lines[2 * i + 1]);
                Assert.Equal($"127.0.0.1:{a.Port}", Headers(lines[2 * i]).GetProperty("Host").GetString());
            }

            await a.DisposeAsync();
            await Wait.UntilAsync(() => pool.Targets.All(t => !t.ActiveUp), TimeSpan.FromSeconds(10), "every origin marked down");
            var (status, body) = await Get($"{gw.Url("site")}/100b");
            Assert.Equal(503, status);
            Assert.Contains("no healthy upstream", body);
            var line = await gw.WaitForLogAsync(l => l.Num("status") == 503);
            Assert.Equal("allow", line.Str("verdict"));
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
        }
    }

    [Fact]
    public async Task Unreachable_target_is_retried_on_another_and_taken_out_passively()
    {
        await using var a = await TestOrigin.StartAsync();
        var closed = Wait.FreePort();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                routes:
                  - { path: "/{**rest}", upstream: pool }
                  - { path: "/dead/{**rest}", upstream: "http://127.0.0.1:{{closed}}", strip_prefix: /dead }
            upstreams:
              pool: { targets: ["http://127.0.0.1:{{closed}}", {{a.Url}}] }
            {{AllowAll}}
            """);
        // No health checks: the first request to the closed port fails to connect and is sent to the other target.
        for (int i = 0; i < 4; i++) Assert.Equal(200, (await Get($"{gw.Url("site")}/100b")).Status);
        Assert.Equal(4, a.Requests);
        var dead = Pool(gw).Targets.Single(t => t.Uri.Port == closed);
        Assert.True(dead.PassiveDown);

        // A single unreachable target: 502 first, then (out for a while) 503.
        var (status, body) = await Get($"{gw.Url("site")}/dead/100b");
        Assert.Equal(502, status);
        Assert.Contains("failed", body);
        Assert.Equal(503, (await Get($"{gw.Url("site")}/dead/100b")).Status);
        var line = await gw.WaitForLogAsync(l => l.Num("status") == 502);
        Assert.Contains("127.0.0.1:" + closed, line.Str("reason"));
    }
}
