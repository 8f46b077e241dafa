using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Bastion.Hosting;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Admin;

public sealed class ReloadTests(AdminOriginFixture f) : IClassFixture<AdminOriginFixture>
{
    static int AdminPort(TestGateway gw) => gw.Host.Admin!.BoundEndPoint!.Port;

    static string WithLog(TestGateway gw, string yaml) => $"logging:\n  access: {gw.LogPath}\n" + yaml;

    static async Task<string> CurlCode(TestGateway gw, string url) =>
        (await Proc.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", "-x", gw.Url("web"), url)).Stdout;

    [Fact]
    public async Task Reload_switches_rules_for_new_requests_on_open_connections_and_keeps_tunnels()
    {
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        var url = $"{f.Origin.Url}/100b";

        // Opened before the reload: a tunnel, and a keep-alive connection that already made one request.
        using var tunnel = await RawClient.ConnectAsync(gw.Port("web"));
        await tunnel.SendAsync($"CONNECT 127.0.0.1:{f.Echo.Port} HTTP/1.1\r\nHost: 127.0.0.1:{f.Echo.Port}\r\n\r\n");
        Assert.Equal(200, (await tunnel.ReadResponseAsync(connect: true)).Status);
        using var keepAlive = await RawClient.ConnectAsync(gw.Port("web"));
        var get = $"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{f.Origin.Port}\r\n\r\n";
        await keepAlive.SendAsync(get);
        Assert.Equal(200, (await keepAlive.ReadResponseAsync()).Status);

        await File.WriteAllTextAsync(gw.ConfigPath, WithLog(gw, AdminConfigs.Proxy(switched: true)));
        var sw = Stopwatch.StartNew();
        Assert.Null(await gw.Host.ReloadAsync("test"));
        sw.Stop();
        Assert.Equal(2, gw.Host.Current.Generation);

        // Same socket, new policy.
        await keepAlive.SendAsync(get);
        var (status, head, _) = await keepAlive.ReadResponseAsync();
        Assert.Equal(403, status);
        var denial = await gw.WaitForLogAsync(l => l.Str("verdict") == "deny" && l.Str("rule") == "no-100b");
        Assert.Equal("switched off by reload", denial.Str("reason"));
        // The tunnel opened under the old rules is not cut and still carries bytes both ways.
        Assert.Equal("after reload\n", await tunnel.EchoAsync("after reload\n"));
        // A new tunnel is judged by the new rules (no tunnel rule any more: default deny).
        using var late = await RawClient.ConnectAsync(gw.Port("web"));
        await late.SendAsync($"CONNECT 127.0.0.1:{f.Echo.Port} HTTP/1.1\r\nHost: 127.0.0.1:{f.Echo.Port}\r\n\r\n");
        Assert.Equal(403, (await late.ReadResponseAsync(connect: true)).Status);

        var metrics = (await AdminHttp.GetAsync(AdminPort(gw), "/metrics")).Body;
        Assert.Equal(1, AdminHttp.Sample(metrics, "bastion_reloads_total", "result=\"success\""));
        Assert.Equal(1, AdminHttp.Sample(metrics, "bastion_config_last_reload_successful"));
        Assert.Equal(2, AdminHttp.Sample(metrics, "bastion_config_generation"));
        var took = AdminHttp.Sample(metrics, "bastion_config_last_reload_duration_seconds");
        Assert.True(took > 0 && took < 5, $"reload took {took}s");
        _ = head;
    }

    [Fact]
    public async Task Invalid_config_is_refused_and_the_old_rules_stay()
    {
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        var errors = new StringWriter();
        gw.Host.Diagnostics = errors;
        var good = await File.ReadAllTextAsync(gw.ConfigPath);
        await File.WriteAllTextAsync(gw.ConfigPath, good.Replace("default: deny", "default: maybe").Replace("policy: out", "policy: nowhere"));

        var error = await gw.Host.ReloadAsync("test");
        Assert.NotNull(error);
        Assert.Contains("nowhere", error);
        Assert.Contains("refused", errors.ToString());
        Assert.Contains("bastion.yaml:", errors.ToString()); // FILE:LINE:COL of each error
        Assert.Equal(1, gw.Host.Current.Generation);
        Assert.Equal("200", await CurlCode(gw, $"{f.Origin.Url}/100b"));
        Assert.Equal("403", await CurlCode(gw, "http://blocked.test/"));

        var admin = AdminPort(gw);
        var metrics = (await AdminHttp.GetAsync(admin, "/metrics")).Body;
        Assert.Equal(1, AdminHttp.Sample(metrics, "bastion_reloads_total", "result=\"failure\""));
        Assert.Equal(0, AdminHttp.Sample(metrics, "bastion_config_last_reload_successful"));
        Assert.Equal(1, AdminHttp.Sample(metrics, "bastion_config_generation"));
        var reload = (await AdminHttp.JsonAsync(admin, "/api/stats")).GetProperty("reload");
        Assert.False(reload.GetProperty("ok").GetBoolean());
        Assert.Contains("nowhere", reload.GetProperty("last_error").GetString());

        // Fixed file: the next reload goes through and clears the error.
        await File.WriteAllTextAsync(gw.ConfigPath, good);
        Assert.Null(await gw.Host.ReloadAsync("test"));
        Assert.Equal(2, gw.Host.Current.Generation);
    }

    [Fact]
    public async Task Reload_that_cannot_bind_is_refused_whole()
    {
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        gw.Host.Diagnostics = TextWriter.Null;
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var busy = ((IPEndPoint)squatter.LocalEndpoint).Port;
        var webPort = gw.Port("web");
        await File.WriteAllTextAsync(gw.ConfigPath, WithLog(gw, AdminConfigs.Proxy(switched: true, extra: $"""
              - name: extra
                type: http-proxy
                listen: 127.0.0.1:{busy}
                policy: out
            """)));
        var error = await gw.Host.ReloadAsync("test");
        Assert.NotNull(error);
        Assert.Contains("extra", error);
        Assert.Equal(1, gw.Host.Current.Generation);
        Assert.False(gw.Host.Listeners.ContainsKey("extra"));
        Assert.Equal(webPort, gw.Port("web"));
        Assert.Equal("200", await CurlCode(gw, $"{f.Origin.Url}/100b")); // old rules: /100b still allowed
    }

    [Fact]
    public async Task A_second_gateway_cannot_share_a_listening_port()
    {
        // .NET's ReuseAddress would set SO_REUSEPORT on Linux and let both bind, splitting the traffic.
        var port = Wait.FreePort();
        var yaml = AdminConfigs.Proxy(admin: "").Replace("listen: 127.0.0.1:0", $"listen: 127.0.0.1:{port}");
        await using var first = await TestGateway.StartAsync(yaml);
        var e = await Assert.ThrowsAnyAsync<Bastion.Hosting.StartupException>(async () => await (await TestGateway.StartAsync(yaml)).DisposeAsync());
        Assert.Contains($"listener 'web': cannot listen on 127.0.0.1:{port}", e.Message);
        Assert.Equal("200", await CurlCode(first, $"{f.Origin.Url}/100b"));
    }

    [Fact]
    public async Task Reload_adds_removes_and_rebinds_listeners_and_the_admin_listener()
    {
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        gw.Host.Diagnostics = TextWriter.Null;
        var oldAdmin = AdminPort(gw);
        var newAdmin = Wait.FreePort();
        await File.WriteAllTextAsync(gw.ConfigPath, WithLog(gw, AdminConfigs.Proxy(admin: $"admin:\n  listen: 127.0.0.1:{newAdmin}\n", extra: """
              - name: extra
                type: http-proxy
                listen: 127.0.0.1:0
                policy: out
            """)));
        Assert.Null(await gw.Host.ReloadAsync("test"));
        Assert.Equal(newAdmin, AdminPort(gw));
        Assert.Equal(HttpStatusCode.OK, (await AdminHttp.GetAsync(newAdmin, "/healthz")).Status);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => AdminHttp.GetAsync(oldAdmin, "/healthz"));
        var stats = await AdminHttp.JsonAsync(newAdmin, "/api/stats");
        Assert.Equal(2, stats.GetProperty("listeners").GetArrayLength());
        var extraUrl = gw.Url("extra");
        Assert.Equal(0, (await Proc.CurlAsync("-f", "-o", "/dev/null", "-x", extraUrl, $"{f.Origin.Url}/100b")).ExitCode);

        // Removed again: the port stops accepting, /healthz does not wait for it.
        await File.WriteAllTextAsync(gw.ConfigPath, WithLog(gw, AdminConfigs.Proxy(admin: $"admin:\n  listen: 127.0.0.1:{newAdmin}\n")));
        Assert.Null(await gw.Host.ReloadAsync("test"));
        Assert.False(gw.Host.Listeners.ContainsKey("extra"));
        var refused = await Proc.CurlAsync("-o", "/dev/null", "-x", extraUrl, $"{f.Origin.Url}/100b");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Equal(HttpStatusCode.OK, (await AdminHttp.GetAsync(newAdmin, "/healthz")).Status);
    }

    [Fact]
    public async Task File_change_reloads_after_a_quiet_period_and_list_files_count()
    {
        var files = new Dictionary<string, string> { ["blocked.txt"] = "blocked.test\n" };
        var yaml = AdminConfigs.Proxy().Replace("blocked: [blocked.test]", "blocked: { file: blocked.txt }");
        await using var gw = await TestGateway.StartAsync(yaml, files);
        gw.Host.Diagnostics = TextWriter.Null;
        using var watcher = new ConfigWatcher(gw.Host, debounce: TimeSpan.FromMilliseconds(100), poll: TimeSpan.FromMilliseconds(500));
        Assert.Equal("200", await CurlCode(gw, $"{f.Origin.Url}/100b"));

        // A referenced list file changes: the origin's address becomes blocked.
        await File.WriteAllTextAsync(Path.Combine(gw.Dir, "blocked.txt"), "blocked.test\n127.0.0.1\n");
        await Wait.UntilAsync(() => gw.Host.Current.Generation == 2, TimeSpan.FromSeconds(10), "reload after the list changed");
        Assert.Equal("403", await CurlCode(gw, $"{f.Origin.Url}/100b"));

        // The config file itself, saved the way editors do (write aside, rename over).
        var tmp = gw.ConfigPath + ".tmp";
        await File.WriteAllTextAsync(tmp, WithLog(gw, yaml.Replace("- name: no-blocked", "- name: renamed-rule")));
        File.Move(tmp, gw.ConfigPath, overwrite: true);
        await Wait.UntilAsync(() => gw.Host.Current.Generation == 3, TimeSpan.FromSeconds(10), "reload after the config changed");
        Assert.Equal("403", await CurlCode(gw, "http://blocked.test/"));
        await gw.WaitForLogAsync(l => l.Str("rule") == "renamed-rule");

        // Touching without changing content does not reload.
        File.SetLastWriteTimeUtc(gw.ConfigPath, DateTime.UtcNow.AddSeconds(5));
        Assert.False(await watcher.CheckAsync());
        Assert.Equal(3, gw.Host.Current.Generation);
    }

    [Fact]
    public async Task Writes_to_a_file_beside_the_config_wake_nothing_and_a_config_change_reloads_once()
    {
        // The access log beside the config (as TestGateway puts it): every flush is an event in the watched directory.
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        var diag = new StringWriter();
        gw.Host.Diagnostics = TextWriter.Synchronized(diag);
        // No poll during the test: only inotify events can wake the watcher.
        using var watcher = new ConfigWatcher(gw.Host, debounce: TimeSpan.FromMilliseconds(100), poll: TimeSpan.FromHours(1));
        Assert.Equal(Path.GetDirectoryName(gw.ConfigPath), Path.GetDirectoryName(gw.LogPath));
        // Two files in turn: inotify merges an event with an identical one still unread, never with another file's.
        string[] siblings = [Path.Combine(gw.Dir, "sibling-a.log"), Path.Combine(gw.Dir, "sibling-b.log")];
        const int writes = 200;
        for (int i = 0; i < writes; i++) await File.AppendAllTextAsync(siblings[i % 2], $"{{\"line\":{i}}}\n");
        Assert.Equal("200", await CurlCode(gw, $"{f.Origin.Url}/100b")); // and the gateway's own log flushes

        // inotify reports a directory's events in order: once the config change has reloaded, the burst was seen.
        await File.WriteAllTextAsync(gw.ConfigPath, WithLog(gw, AdminConfigs.Proxy(switched: true)));
        await Wait.UntilAsync(() => diag.ToString().Contains("configuration reloaded", StringComparison.Ordinal), TimeSpan.FromSeconds(10),
            "reload after the config changed");
        Assert.Equal(2, gw.Host.Current.Generation);
        Assert.Equal(1, watcher.Reloads);
        // Unfiltered, each append is an event (~204 seen); the config's own write is a handful.
        Assert.True(watcher.Events < 10, $"{watcher.Events} file events reached the watcher for {writes} writes beside the config");
        Assert.True(watcher.Pokes <= watcher.Events, $"{watcher.Pokes} wake-ups");
        var lines = diag.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines); // the one reload's line
        Assert.Contains("file change", lines[0]);
    }

    [Fact]
    public async Task Reload_reopens_a_rotated_access_log()
    {
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        gw.Host.Diagnostics = TextWriter.Null;
        Assert.Equal("200", await CurlCode(gw, $"{f.Origin.Url}/100b"));
        await gw.WaitForLogAsync(l => l.Str("event") == "request");
        var rotated = gw.LogPath + ".1";
        File.Move(gw.LogPath, rotated);
        Assert.Null(await gw.Host.ReloadAsync("logrotate"));
        Assert.Equal("403", await CurlCode(gw, "http://blocked.test/after-rotation"));
        var line = await gw.WaitForLogAsync(l => l.Str("request") == "GET http://blocked.test/after-rotation");
        Assert.Equal("deny", line.Str("verdict"));
        Assert.DoesNotContain("after-rotation", await File.ReadAllTextAsync(rotated));
    }

    [Fact]
    public async Task Stop_drains_then_closes_and_readyz_says_draining()
    {
        var gw = await TestGateway.StartAsync(AdminConfigs.Proxy());
        try
        {
            gw.Host.Diagnostics = TextWriter.Null;
            var admin = AdminPort(gw);
            using var tunnel = await RawClient.ConnectAsync(gw.Port("web"));
            await tunnel.SendAsync($"CONNECT 127.0.0.1:{f.Echo.Port} HTTP/1.1\r\nHost: x\r\n\r\n");
            Assert.Equal(200, (await tunnel.ReadResponseAsync(connect: true)).Status);

            var sw = Stopwatch.StartNew();
            var stopping = gw.Host.StopAsync(TimeSpan.FromSeconds(1));
            await Wait.UntilAsync(() => gw.Host.Draining, TimeSpan.FromSeconds(5), "draining");
            // While draining: no new connections, the open tunnel still works, /readyz says 503.
            await Wait.UntilAsync(() => !gw.Host.Listener("web").IsRunning, TimeSpan.FromSeconds(5), "listener to stop accepting");
            var (ready, body) = await AdminHttp.GetAsync(admin, "/readyz");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready);
            Assert.Contains("draining", body);
            Assert.Equal("still here\n", await tunnel.EchoAsync("still here\n"));
            await stopping;
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(6), $"stop took {sw.Elapsed}");
            Assert.Equal(0, gw.Host.Connections.Count);
            Assert.Null(gw.Host.Admin);
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => AdminHttp.GetAsync(admin, "/healthz"));
        }
        finally { await gw.DisposeAsync(); }
    }
}
