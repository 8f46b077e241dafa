using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Admin;

/// <summary>The dashboard rendered by a real browser (Debian's chromium, headless), against a gateway with traffic.</summary>
public sealed class DashboardTests(AdminOriginFixture f) : IClassFixture<AdminOriginFixture>
{
    static Task<ProcResult> Chromium(string url, params string[] mode)
    {
        var profile = Scratch.NewDir("chromium");
        return Proc.RunAsync("chromium", [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--hide-scrollbars", $"--user-data-dir={profile}",
            "--virtual-time-budget=5000", .. mode, url], TimeSpan.FromSeconds(90));
    }

    static string TwoListeners => AdminConfigs.Proxy(extra: """
          - name: edge-proxy
            type: http-proxy
            listen: 127.0.0.1:0
            policy: out
        """);

    [Fact]
    public async Task Dashboard_renders_listeners_connections_and_denials_without_script_errors()
    {
        await using var gw = await TestGateway.StartAsync(TwoListeners);
        var admin = gw.Host.Admin!.BoundEndPoint!.Port;
        for (int i = 0; i < 4; i++)
            Assert.Equal(0, (await Proc.CurlAsync("-f", "-o", "/dev/null", "-x", gw.Url("web"), $"{f.Origin.Url}/bytes/20000")).ExitCode);
        await Proc.CurlAsync("-o", "/dev/null", "-x", gw.Url("edge-proxy"), "http://blocked.test/tracker.js");
        await gw.WaitForLogAsync(l => l.Str("rule") == "no-blocked");
        using var tunnel = await RawClient.ConnectAsync(gw.Port("web"));
        await tunnel.SendAsync($"CONNECT 127.0.0.1:{f.Echo.Port} HTTP/1.1\r\nHost: x\r\n\r\n");
        Assert.Equal(200, (await tunnel.ReadResponseAsync(connect: true)).Status);
        // Two samples now, so that the chart has a line to draw whatever the 1 s timer did meanwhile.
        gw.Host.Admin.History.Sample();
        gw.Host.Admin.History.Sample();

        var url = $"http://127.0.0.1:{admin}/";
        var dom = await Chromium(url, "--dump-dom");
        Assert.True(dom.ExitCode == 0, dom.ToString());
        var html = dom.Stdout;
        Assert.Matches("<html[^>]*data-ok=\"true\"", html);
        Assert.DoesNotContain("data-error", html);
        Assert.Contains("data-listener=\"web\"", html);
        Assert.Contains("data-listener=\"edge-proxy\"", html);
        Assert.Contains("Healthy", html);
        // The held tunnel in the live connections table, the denial with its rule and reason.
        Assert.Contains($"127.0.0.1:{f.Echo.Port}", html);
        Assert.Contains("GET http://blocked.test/tracker.js", html);
        Assert.Contains("no-blocked", html);
        Assert.Contains("blocked domain", html);
        // The traffic chart drew lines (SVG paths), not the "collecting" placeholder.
        Assert.Matches("id=\"chart-bytes\"><svg[^>]*>.*<path", html);

        var shot = Path.Combine(Repo.Artifacts, "dashboard.png");
        File.Delete(shot);
        var r = await Chromium(url, $"--screenshot={shot}", "--window-size=1400,900");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.True(new FileInfo(shot).Length > 20_000, "screenshot missing or blank");
    }

    [Fact]
    public async Task Dashboard_asks_for_the_token_when_one_is_configured()
    {
        var files = new Dictionary<string, string> { ["admin.token"] = "dash-token-0123456789\n" };
        await using var gw = await TestGateway.StartAsync(AdminConfigs.Proxy(admin: "admin:\n  listen: 127.0.0.1:0\n  token_file: admin.token\n"), files);
        var admin = gw.Host.Admin!.BoundEndPoint!.Port;
        var dom = await Chromium($"http://127.0.0.1:{admin}/", "--dump-dom");
        Assert.True(dom.ExitCode == 0, dom.ToString());
        Assert.Matches("<html[^>]*data-ok=\"auth\"", dom.Stdout);
        Assert.Matches("<dialog id=\"token-dialog\" open", dom.Stdout);
        // Nothing behind the API leaked into the page without the token.
        Assert.DoesNotContain("data-listener=\"web\"", dom.Stdout);
        Assert.DoesNotContain("dash-token-0123456789", dom.Stdout);
    }
}
