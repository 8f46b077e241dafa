using System.Text.Json;
using System.Text.RegularExpressions;
using Bastion.Tests.Infrastructure;
using static Bastion.Tests.Reverse.ReverseRoutingTests;

namespace Bastion.Tests.Admin;

/// <summary>The files in deploy/ stay valid as the configuration language grows.</summary>
public sealed class DeployTests
{
    static string Deploy(string name) => Path.Combine(Repo.Root, "deploy", name);

    [Fact]
    public async Task Shipped_configurations_pass_check()
    {
        var r = await Proc.BastionAsync(["check", "-c", Deploy("bastion.yaml")]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("ok", r.Stdout);

        // The container's config needs its token secret; give it one where the test can write.
        var dir = Scratch.NewDir("deploy");
        var token = Path.Combine(dir, "token");
        await File.WriteAllTextAsync(token, "t0ken-0123456789abcdef\n");
        var docker = Path.Combine(dir, "docker.yaml");
        await File.WriteAllTextAsync(docker, (await File.ReadAllTextAsync(Deploy("docker.yaml"))).Replace("/run/secrets/bastion_admin_token", token));
        r = await Proc.BastionAsync(["check", "-c", docker]);
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    [Fact]
    public async Task Systemd_unit_is_sandboxed_and_reloads_with_sighup()
    {
        var unit = await File.ReadAllTextAsync(Deploy("bastion.service"));
        foreach (var line in new[] { "ProtectSystem=strict", "NoNewPrivileges=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                     "User=bastion", "ReadWritePaths=/var/log/bastion", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM" })
            Assert.Contains("\n" + line + "\n", unit);
        Assert.DoesNotContain("MemoryDenyWriteExecute=yes\n", unit.Replace("# Not set on purpose: MemoryDenyWriteExecute=yes", ""));
        var docker = await File.ReadAllTextAsync(Deploy("Dockerfile"));
        Assert.Contains("dotnet publish", docker);
        Assert.Contains("USER $APP_UID", docker);
    }

    [Fact]
    public async Task Prometheus_rules_pass_promtool_check_and_their_unit_tests()
    {
        var dir = Deploy("prometheus");
        // Debian's prometheus package gives promtool (scripts/test-deps.txt; test.sh installs it).
        var check = await Proc.RunAsync("promtool", ["check", "rules", Path.Combine(dir, "bastion-alerts.yml")], TimeSpan.FromSeconds(60));
        Assert.True(check.ExitCode == 0, check.ToString());
        Assert.Contains("SUCCESS", check.Stdout);
        var test = await Proc.RunAsync("promtool", ["test", "rules", Path.Combine(dir, "bastion-alerts.test.yml")], TimeSpan.FromSeconds(60));
        Assert.True(test.ExitCode == 0, test.ToString());
    }

    /// <summary>Metric names in PromQL text (bastion_*, process_*, dotnet_*; `up` is Prometheus's own).</summary>
    static IEnumerable<string> MetricNames(string promql) =>
        Regex.Matches(promql, @"\b(?:bastion|process|dotnet)_[a-z0-9_]+\b").Select(m => m.Value);

    static IEnumerable<string> Strings(JsonElement e, string property) => e.ValueKind switch
    {
        JsonValueKind.Object => e.EnumerateObject().SelectMany(p =>
            p.Name == property && p.Value.ValueKind == JsonValueKind.String ? [p.Value.GetString()!] : Strings(p.Value, property)),
        JsonValueKind.Array => e.EnumerateArray().SelectMany(x => Strings(x, property)),
        _ => [],
    };

    [Fact]
    public async Task Grafana_dashboard_and_alert_rules_name_only_metrics_the_gateway_exports()
    {
        var dashboard = JsonDocument.Parse(await File.ReadAllTextAsync(Deploy("grafana/bastion-dashboard.json"))).RootElement;
        Assert.Equal("bastion-gateway", dashboard.GetProperty("uid").GetString());
        var exprs = Strings(dashboard, "expr").Concat(Strings(dashboard, "definition")).ToList();
        Assert.True(exprs.Count > 20, $"only {exprs.Count} queries");
        var names = exprs.SelectMany(MetricNames)
            .Concat(MetricNames(await File.ReadAllTextAsync(Deploy("prometheus/bastion-alerts.yml"))))
            .ToHashSet(StringComparer.Ordinal);

        // A gateway with an upstream group and some traffic, so that every labelled metric has a sample.
        await using var origin = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync(AdminConfigs.ReverseSite(origin.Url));
        Assert.Equal(200, (await Get($"{gw.Url("site")}/100b")).Status);
        await gw.WaitForLogAsync(l => l.Num("status") == 200);
        var metrics = (await AdminHttp.GetAsync(gw.Host.Admin!.BoundEndPoint!.Port, "/metrics")).Body;
        var missing = names.Where(n => !metrics.Split('\n').Any(l => l.StartsWith(n + "{", StringComparison.Ordinal) || l.StartsWith(n + " ", StringComparison.Ordinal))).ToList();
        Assert.True(missing.Count == 0, "named by deploy/ but not in /metrics: " + string.Join(", ", missing));
        Assert.Contains("bastion_upstream_up", names);
        Assert.Contains("bastion_upstream_target_latency_seconds_bucket", names);
    }
}
