using System.Net;
using System.Security.Cryptography.X509Certificates;
using Bastion.Gateway.Tls;
using Bastion.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Bastion.Tests.Tls;

/// <summary>
/// HTTPS origins with their own test CA (trusted by the gateway through upstream_ca), one that is expired and
/// one whose certificate names another host, and an inspection CA made the way `bastion ca init` makes it.
/// Names are under .localhost (RFC 6761: loopback without DNS), so the gateway resolves nothing.
/// </summary>
public sealed class InspectionFixture : IAsyncLifetime
{
    public X509Certificate2 OriginCa { get; } = TestCerts.MakeCa("Bastion Tests Origin CA");
    public TestOrigin Origin { get; private set; } = null!;
    public TestOrigin Expired { get; private set; } = null!;
    public TestOrigin WrongName { get; private set; } = null!;
    public string Dir { get; } = Scratch.NewDir("insp");
    public string CaDir => Path.Combine(Dir, "ca");
    public string CaCert => Path.Combine(CaDir, CertificateAuthority.CertFile);
    public string OriginCaPem => Path.Combine(Dir, "origin-ca.pem");

    public async Task InitializeAsync()
    {
        CertificateAuthority.Create(CaDir, rsa: false, []);
        await File.WriteAllTextAsync(OriginCaPem, OriginCa.ExportCertificatePem());
        var names = new[] { "shop.localhost", "bank.localhost", "api.localhost", "evil.localhost", "*.shop.localhost", "localhost" };
        Origin = await TestOrigin.StartAsync(extra: Pages, certificate: TestCerts.Issue(OriginCa, names, [IPAddress.Loopback]));
        Expired = await TestOrigin.StartAsync(certificate: TestCerts.Issue(OriginCa, ["expired.localhost"], null,
            DateTimeOffset.UtcNow.AddDays(-60), DateTimeOffset.UtcNow.AddDays(-1)));
        WrongName = await TestOrigin.StartAsync(certificate: TestCerts.Issue(OriginCa, ["other.localhost"]));
    }

    /// <summary>A page with a script and a tracker, for the browser test.</summary>
    static void Pages(WebApplication app)
    {
        app.MapGet("/page", () => Results.Content("""
            <!doctype html><html><head><title>inspected</title>
            <script src="/app.js"></script>
            <script src="/ads/tracker.js"></script></head>
            <body><div id="out">static</div></body></html>
            """, "text/html"));
        app.MapGet("/app.js", () => Results.Content(
            "document.addEventListener('DOMContentLoaded', () => { document.getElementById('out').textContent = 'script ran over ' + location.protocol; });",
            "application/javascript"));
        app.MapGet("/ads/tracker.js", () => Results.Content("document.title = 'TRACKED';", "application/javascript"));
        app.MapGet("/proto", (HttpContext c) => Results.Text(c.Request.Protocol + "\n"));
        app.UseWebSockets();
        app.Map("/ws", async (HttpContext ctx) =>
        {
            if (!ctx.WebSockets.IsWebSocketRequest) { ctx.Response.StatusCode = 400; return; }
            using var ws = await ctx.WebSockets.AcceptWebSocketAsync();
            var buf = new byte[64 * 1024];
            while (true)
            {
                var r = await ws.ReceiveAsync(buf, ctx.RequestAborted);
                if (r.MessageType == System.Net.WebSockets.WebSocketMessageType.Close)
                {
                    await ws.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "bye", ctx.RequestAborted);
                    return;
                }
                await ws.SendAsync(buf.AsMemory(0, r.Count), r.MessageType, r.EndOfMessage, ctx.RequestAborted);
            }
        });
    }

    /// <summary>A forward proxy inspecting *.localhost but bank.localhost, trusting the origins' CA.</summary>
    public string Yaml(string rules = "", string listener = "") => $$"""
        listeners:
          - name: web
            type: http-proxy
            listen: 127.0.0.1:0
            policy: out
            tls_inspection:
              ca: {{CaDir}}
              inspect: ["*.localhost"]
              skip: [bank.localhost]
              upstream_ca: {{OriginCaPem}}
        {{listener}}
        policies:
          out:
            default: deny
            rules:
        {{rules}}
              - deny: { path: "/secret/**" }
                reason: secret area
                name: no-secrets
              - deny: { path: "/ads/**" }
                reason: advertising
                name: no-ads
              - deny: { content_type: "application/x-*" }
                reason: no binaries
                name: no-binaries
              - allow: { method: CONNECT }
                name: tunnels
              - allow: { source: 127.0.0.0/8 }
                name: loopback
        """;

    public async Task DisposeAsync()
    {
        foreach (var o in new[] { Origin, Expired, WrongName })
            if (o is not null) await o.DisposeAsync();
    }
}
