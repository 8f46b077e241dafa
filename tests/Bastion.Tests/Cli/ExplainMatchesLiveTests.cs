using System.Net;
using System.Text.Json;
using Bastion.Cli;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Cli;

/// <summary>
/// `bastion explain` and the live gateway must agree: every request below is sent for real (curl, a raw SOCKS or
/// TCP client) through one gateway with a listener of every type, and its logged verdict and rule are compared
/// with what `explain` says for the same request in the listener's terms.
/// </summary>
public class ExplainMatchesLiveTests
{
    sealed record Case(string Listener, string Request, Func<Task> Send, Func<JsonElement, bool> Line, string ExpectVerdict, string ExpectRule);

    [Fact]
    public async Task Explain_agrees_with_the_live_gateway_for_every_listener_type()
    {
        await using var origin = await TestOrigin.StartAsync();
        await using var echo = TcpServer.Echo();
        int o = origin.Port, e = echo.Port;
        int sitePort = Wait.FreePort(), grpPort = Wait.FreePort();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: web }
              - name: site
                type: http-reverse
                listen: 127.0.0.1:{{sitePort}}
                policy: site
                routes: [{ path: "/{**rest}", upstream: "{{origin.Url}}" }]
              - { name: socks, type: socks5, listen: 127.0.0.1:0, policy: socks }
              - { name: db, type: tcp, listen: 127.0.0.1:0, upstream: "127.0.0.1:{{e}}", policy: tcp }
              - { name: grp, type: tcp, listen: 127.0.0.1:{{grpPort}}, upstream: pool, policy: tcp }
            upstreams:
              pool: { targets: ["127.0.0.1:{{e}}"] }
            policies:
              web:
                default: deny
                rules:
                  - deny: { url: "~\\.exe$" }
                    name: no-exe
                  - deny: { method: TRACE, host: evil.test }
                    name: no-trace-evil
                  - allow: { source: 127.0.0.0/8, port: [{{o}}, {{e}}] }
                    name: loopback
              site:
                default: deny
                rules:
                  - deny: { path: "/admin/**" }
                    name: no-admin
                  - allow: { port: {{sitePort}}, host: [127.0.0.1, www.test] }
                    name: site-port
              socks:
                default: deny
                rules:
                  - deny: { host: "*.invalid" }
                    name: no-invalid
                  - allow: { host: localhost, port: {{o}} }
                    name: local-origin
              tcp:
                default: deny
                rules:
                  - allow: { port: {{e}} }
                    name: upstream-port
                  - allow: { port: {{grpPort}} }
                    name: dialled-port
            """);
        var web = gw.Url("web");
        var site = $"http://127.0.0.1:{sitePort}";
        Task Curl(params string[] args) => Proc.CurlAsync(["-sS", "-o", "/dev/null", "--max-time", "10", .. args]);
        async Task Connect(int port, byte[]? send = null)
        {
            using var s = await Sock.ConnectAsync(port);
            if (send is not null) await s.SendAsync(send);
            s.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            await s.ReadToEndAsync(TimeSpan.FromSeconds(10));
        }
        async Task Socks(string host, int port)
        {
            using var s = await Sock.ConnectAsync(gw.Port("socks"));
            await s.SendAsync([5, 1, 0]);
            await s.ReadExactlyAsync(2);
            await s.SendAsync([5, 1, 0, 3, (byte)host.Length, .. System.Text.Encoding.ASCII.GetBytes(host), (byte)(port >> 8), (byte)port]);
            await s.ReadExactlyAsync(2);   // VER and REP: the decision is made by now
        }
        bool Req(JsonElement l, string contains) => l.Str("event") == "request" && (l.Str("request") ?? "").Contains(contains, StringComparison.Ordinal);

        Case[] cases =
        [
            // http-proxy: the one canonical URL, judged and forwarded (issue 9): dot-segments removed, escapes of
            // unreserved characters decoded, by the live session and explain alike.
            new("web", $"GET http://127.0.0.1:{o}/100b", () => Curl("-x", web, $"http://127.0.0.1:{o}/100b"), l => Req(l, $"GET http://127.0.0.1:{o}/100b"), "allow", "loopback"),
            new("web", $"GET http://127.0.0.1:{o}/a/../100b", () => Curl("--path-as-is", "-x", web, $"http://127.0.0.1:{o}/a/../100b"), l => Req(l, $"GET http://127.0.0.1:{o}/100b"), "allow", "loopback"),
            new("web", $"GET http://127.0.0.1:{o}/setup.ex%65", () => Curl("-x", web, $"http://127.0.0.1:{o}/setup.ex%65"), l => Req(l, "/setup.exe"), "deny", "no-exe"),
            // TRACE: a deny rule naming TRACE does not unlock it.
            new("web", $"TRACE http://127.0.0.1:{o}/echo", () => Curl("-X", "TRACE", "-x", web, $"http://127.0.0.1:{o}/echo"), l => Req(l, "TRACE "), "deny", "loopback"),
            new("web", $"CONNECT 127.0.0.1:{e}", () => Curl("-p", "-x", web, $"telnet://127.0.0.1:{e}"), l => Req(l, $"CONNECT 127.0.0.1:{e}"), "allow", "loopback"),
            new("web", "GET http://127.0.0.1:9/", () => Curl("-x", web, "http://127.0.0.1:9/"), l => Req(l, "GET http://127.0.0.1:9/"), "deny", "web#default"),
            // A byte outside visible ASCII in the target (here U+00A0 as UTF-8) is a malformed request line on the
            // wire, refused before the policy; explain must not percent-encode it and judge the result.
            new("web", $"GET http://127.0.0.1:{o}/100b\u00a0", () => Connect(gw.Port("web"), [.. "GET http://127.0.0.1:"u8, .. System.Text.Encoding.ASCII.GetBytes(o.ToString()), .. "/100b\u00a0 HTTP/1.1\r\nHost: x\r\n\r\n"u8]),
                l => l.Str("reason") == "malformed request line", "deny", "protocol"),
            // http-reverse: `port` is the port the request arrived on, whatever the Host header says.
            new("site", "GET http://www.test:8080/x", () => Curl("-H", "Host: www.test:8080", $"{site}/100b"), l => Req(l, "http://www.test:8080/100b"), "allow", "site-port"),
            new("site", $"GET http://127.0.0.1:{sitePort}/admin/users", () => Curl($"{site}/admin/users"), l => Req(l, "/admin/users"), "deny", "no-admin"),
            new("site", $"TRACE http://127.0.0.1:{sitePort}/trace", () => Curl("-X", "TRACE", $"{site}/trace"), l => Req(l, "TRACE "), "deny", "site-port"),
            new("site", "GET http://other.test/", () => Curl("-H", "Host: other.test", $"{site}/"), l => Req(l, "http://other.test/"), "deny", "site#default"),
            // socks5: host and port of the target, decided before any lookup.
            new("socks", $"localhost:{o}", () => Socks("localhost", o), l => Req(l, $"CONNECT localhost:{o}"), "allow", "local-origin"),
            new("socks", "db.invalid:5432", () => Socks("db.invalid", 5432), l => Req(l, "CONNECT db.invalid:5432"), "deny", "no-invalid"),
            // tcp: a fixed upstream's port stands for the target; a group's listener port is the one dialled.
            new("db", $"127.0.0.1:{gw.Port("db")}", () => Connect(gw.Port("db"), [1]), l => Req(l, $"TCP 127.0.0.1:{e}"), "allow", "upstream-port"),
            new("grp", $"127.0.0.1:{grpPort}", () => Connect(grpPort, [1]), l => Req(l, "TCP pool"), "allow", "dialled-port"),
        ];

        var rt = gw.Host.Current;
        foreach (var c in cases)
        {
            int before = gw.LogLines().Count(c.Line);
            await c.Send();
            var line = await Wait.ForAsync(() =>
            {
                var matching = gw.LogLines().Where(c.Line).ToList();
                return (matching.Count > before, matching.LastOrDefault());
            }, TimeSpan.FromSeconds(10), $"the live decision on {c.Listener}: {c.Request}");
            var d = Explain.Judge(rt, rt.Listener(c.Listener)!, c.Request, new RequestAttributes { Source = IPAddress.Loopback });
            var live = (line.Str("verdict"), line.Str("rule"));
            Assert.True(live == (c.ExpectVerdict, c.ExpectRule), $"{c.Listener} {c.Request}: live said {live}");
            Assert.True((d.VerdictText, d.RuleName) == live, $"{c.Listener} {c.Request}: explain said ({d.VerdictText}, {d.RuleName}), live {live}");
        }
    }
}
