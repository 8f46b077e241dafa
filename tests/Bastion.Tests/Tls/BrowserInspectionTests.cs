using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Tls;

/// <summary>Headless Chromium trusting the inspection CA through its NSS database, as a deployed browser would.</summary>
public sealed class BrowserInspectionTests(InspectionFixture f) : IClassFixture<InspectionFixture>
{
    [Fact]
    public async Task Chromium_loads_an_https_page_and_its_script_through_inspection_and_the_tracker_is_denied()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml());
        // Chromium on Linux trusts what $HOME/.pki/nssdb trusts: put the inspection CA there (docs/tls-inspection.md).
        var home = Scratch.NewDir("home");
        var db = Path.Combine(home, ".pki", "nssdb");
        Directory.CreateDirectory(db);
        var created = await Proc.RunAsync("certutil", ["-N", "-d", $"sql:{db}", "--empty-password"]);
        Assert.True(created.ExitCode == 0, created.ToString());
        var added = await Proc.RunAsync("certutil", ["-A", "-d", $"sql:{db}", "-n", "Bastion inspection", "-t", "C,,", "-i", f.CaCert]);
        Assert.True(added.ExitCode == 0, added.ToString());

        var origin = $"https://shop.localhost:{f.Origin.Port}";
        var r = await Chromium.DumpDomAsync($"{origin}/page",
            [$"--proxy-server=http://127.0.0.1:{gw.Port("web")}", "--proxy-bypass-list=<-loopback>"],
            env: new Dictionary<string, string> { ["HOME"] = home });
        Assert.True(r.Stdout.Contains("script ran over https:"), r.ToString());
        Assert.DoesNotContain("TRACKED", r.Stdout);

        var page = await gw.WaitForLogAsync(l => l.Str("request") == $"GET {origin}/app.js");
        Assert.Equal("inspected", page.Str("tls"));
        Assert.Equal("allow", page.Str("verdict"));
        var tracker = await gw.WaitForLogAsync(l => l.Str("request") == $"GET {origin}/ads/tracker.js");
        Assert.Equal("no-ads", tracker.Str("rule"));
        Assert.Equal(403, tracker.Num("status"));
        // No certificate error: Chromium never refused the minted certificate.
        Assert.DoesNotContain(gw.LogLines(), l => (l.Str("reason") ?? "").Contains("refused the minted certificate"));
    }
}
