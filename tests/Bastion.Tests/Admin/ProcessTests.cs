using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Admin;

/// <summary>The real `bastion run` process: signals, file changes, exit codes.</summary>
public sealed class ProcessTests(AdminOriginFixture f) : IClassFixture<AdminOriginFixture>
{
    sealed class Running(BackgroundProcess proc, string dir, string config, int web, int admin) : IAsyncDisposable
    {
        public BackgroundProcess Proc => proc;
        public string Dir => dir;
        public string Config => config;
        public int Web => web;
        public int Admin => admin;
        public int Pid => proc.Process.Id;

        public async ValueTask DisposeAsync()
        {
            await proc.DisposeAsync();
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    static async Task<Running> StartAsync(string yaml, params string[] extraArgs)
    {
        var dir = Scratch.NewDir("run");
        var config = Path.Combine(dir, "bastion.yaml");
        await File.WriteAllTextAsync(config, $"logging:\n  access: {Path.Combine(dir, "access.log")}\n" + yaml);
        var proc = Proc.Start("dotnet", [Proc.BastionDll, "run", "-c", config, .. extraArgs], dir);
        await proc.WaitForOutputAsync("running (", TimeSpan.FromSeconds(30));
        var web = int.Parse(Regex.Match(proc.Output, @"listener 'web' \(http-proxy\) listening on 127\.0\.0\.1:(\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
        var admin = int.Parse(Regex.Match(proc.Output, @"admin listening on http://127\.0\.0\.1:(\d+)/").Groups[1].Value, CultureInfo.InvariantCulture);
        return new Running(proc, dir, config, web, admin);
    }

    static Task Signal(int pid, string sig) => Proc.RunAsync("kill", [$"-{sig}", pid.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(10));

    async Task<string> Code(Running r, string path) =>
        (await Proc.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", "-x", $"http://127.0.0.1:{r.Web}", $"{f.Origin.Url}{path}")).Stdout;

    static string Logged(string yaml, string dir) => $"logging:\n  access: {Path.Combine(dir, "access.log")}\n" + yaml;

    [Fact]
    public async Task Sighup_reloads_switching_a_rule_while_a_tunnel_keeps_carrying_bytes()
    {
        await using var r = await StartAsync(AdminConfigs.Proxy(), "--no-watch");
        Assert.Equal("200", await Code(r, "/100b"));
        using var tunnel = await RawClient.ConnectAsync(r.Web);
        await tunnel.SendAsync($"CONNECT 127.0.0.1:{f.Echo.Port} HTTP/1.1\r\nHost: x\r\n\r\n");
        Assert.Equal(200, (await tunnel.ReadResponseAsync(connect: true)).Status);

        await File.WriteAllTextAsync(r.Config, Logged(AdminConfigs.Proxy(switched: true), r.Dir));
        await Signal(r.Pid, "HUP");
        await r.Proc.WaitForOutputAsync("configuration reloaded (SIGHUP): generation 2", TimeSpan.FromSeconds(15));
        Assert.Equal("403", await Code(r, "/100b"));
        Assert.Equal("through the reload\n", await tunnel.EchoAsync("through the reload\n"));

        // A broken file is refused with a line on stderr; the rules in force stay.
        await File.WriteAllTextAsync(r.Config, Logged(AdminConfigs.Proxy().Replace("policy: out", "policy: missing"), r.Dir));
        await Signal(r.Pid, "HUP");
        await r.Proc.WaitForOutputAsync("reload (SIGHUP) refused", TimeSpan.FromSeconds(15));
        // The errors follow the "refused" line; stderr is read line by line, so wait for them too.
        await r.Proc.WaitForOutputAsync("unknown policy 'missing'", TimeSpan.FromSeconds(15));
        Assert.Equal("403", await Code(r, "/100b"));
        var metrics = (await AdminHttp.GetAsync(r.Admin, "/metrics")).Body;
        Assert.Equal(1, AdminHttp.Sample(metrics, "bastion_reloads_total", "result=\"failure\""));
        Assert.Equal(2, AdminHttp.Sample(metrics, "bastion_config_generation"));
        Assert.False(r.Proc.Process.HasExited);
    }

    [Fact]
    public async Task Editing_the_file_reloads_the_running_gateway()
    {
        await using var r = await StartAsync(AdminConfigs.Proxy());
        Assert.Equal("200", await Code(r, "/100b"));
        await File.WriteAllTextAsync(r.Config, Logged(AdminConfigs.Proxy(switched: true), r.Dir));
        await r.Proc.WaitForOutputAsync("configuration reloaded (file change): generation 2", TimeSpan.FromSeconds(15));
        Assert.Equal("403", await Code(r, "/100b"));
        var stats = await AdminHttp.JsonAsync(r.Admin, "/api/stats");
        Assert.Equal(2, stats.GetProperty("generation").GetInt64());
    }

    [Fact]
    public async Task Sigterm_drains_and_exits_zero()
    {
        await using var r = await StartAsync(AdminConfigs.Proxy());
        using var tunnel = await RawClient.ConnectAsync(r.Web);
        await tunnel.SendAsync($"CONNECT 127.0.0.1:{f.Echo.Port} HTTP/1.1\r\nHost: x\r\n\r\n");
        Assert.Equal(200, (await tunnel.ReadResponseAsync(connect: true)).Status);
        var sw = Stopwatch.StartNew();
        await Signal(r.Pid, "TERM");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await r.Proc.Process.WaitForExitAsync(cts.Token);
        sw.Stop();
        Assert.Equal(0, r.Proc.Process.ExitCode);
        Assert.Contains("draining open ones for up to 2s", r.Proc.Output);
        Assert.Contains("bastion: stopped", r.Proc.Output);
        // The open tunnel held the drain until its 2 s deadline; then it was closed.
        Assert.True(sw.Elapsed >= TimeSpan.FromSeconds(1.5), $"exited after {sw.Elapsed}: the drain did not wait");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"exited after {sw.Elapsed}");
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => AdminHttp.GetAsync(r.Admin, "/healthz"));
    }
}
