using Bastion.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Bastion.Tests.Forward;

/// <summary>A real browser (headless Chromium) using the gateway as its proxy.</summary>
public sealed class BrowserThroughProxyTests
{
    [Fact]
    public async Task Chromium_loads_a_page_and_its_script_through_the_proxy_and_denied_resources_are_blocked()
    {
        await using var origin = await TestOrigin.StartAsync(extra: app =>
        {
            app.MapGet("/page", () => Results.Content("""
                <!doctype html><html><head><title>through bastion</title>
                <script src="/app.js"></script>
                <script src="/ads/tracker.js"></script></head>
                <body><div id="out">static</div></body></html>
                """, "text/html"));
            app.MapGet("/app.js", () => Results.Content(
                "document.addEventListener('DOMContentLoaded', () => { document.getElementById('out').textContent = 'script ran'; });",
                "application/javascript"));
            app.MapGet("/ads/tracker.js", () => Results.Content("document.title = 'TRACKED';", "application/javascript"));
        });
        await using var gw = await TestGateway.StartAsync("""
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: out }
            policies:
              out:
                rules:
                  - deny: { path: "/ads/**" }
                    reason: advertising
                    name: no-ads
                  - allow: { source: 127.0.0.1 }
                    name: loopback
            """);
        var r = await Chromium.DumpDomAsync($"{origin.Url}/page",
            [$"--proxy-server=http://127.0.0.1:{gw.Port("web")}", "--proxy-bypass-list=<-loopback>"]);
        Assert.Contains("script ran", r.Stdout);
        Assert.DoesNotContain("TRACKED", r.Stdout);
        await gw.WaitForLogAsync(l => l.Str("request") == $"GET {origin.Url}/app.js" && l.Str("verdict") == "allow");
        var denied = await gw.WaitForLogAsync(l => l.Str("request") == $"GET {origin.Url}/ads/tracker.js");
        Assert.Equal("no-ads", denied.Str("rule"));
        Assert.Equal(403, denied.Num("status"));
    }
}
