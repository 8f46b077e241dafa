using System.Net.WebSockets;
using System.Text;
using Bastion.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using static Bastion.Tests.Reverse.ReverseRoutingTests;

namespace Bastion.Tests.Reverse;

/// <summary>TLS termination with SNI, HTTP/2, HTTPS upstreams with a trusted CA, WebSockets.</summary>
public class ReverseTlsTests
{
    [Fact]
    public async Task Certificate_is_chosen_by_sni_and_http2_is_negotiated()
    {
        var dir = Scratch.NewDir("sni");
        var (aCrt, aKey) = TestCerts.WritePem(dir, "a", TestCerts.Make("a.test", ["a.test"]));
        var (bCrt, bKey) = TestCerts.WritePem(dir, "b", TestCerts.Make("b.test", ["b.test", "*.b.test"]));
        await using var o = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                tls:
                  - { cert: {{aCrt}}, key: {{aKey}} }
                  - { cert: {{bCrt}}, key: {{bKey}} }
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            {{AllowAll}}
            """);
        int port = gw.Port("site");

        // curl verifies the chain against the one certificate it trusts: only the right choice passes.
        foreach (var (name, crt) in new[] { ("a.test", aCrt), ("b.test", bCrt), ("www.b.test", bCrt) })
        {
            var r = await Proc.CurlAsync("--resolve", $"{name}:{port}:127.0.0.1", "--cacert", crt, "--http2",
                "-o", "/dev/null", "-w", "%{http_code} %{http_version}", $"https://{name}:{port}/100b");
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal("200 2", r.Stdout);
        }
        // HTTP/1.1 over TLS still works (ALPN offers both).
        var h1 = await Proc.CurlAsync("-k", "--http1.1", "-o", "/dev/null", "-w", "%{http_version}", $"https://127.0.0.1:{port}/100b");
        Assert.Equal("1.1", h1.Stdout);

        var s = await Proc.RunAsync("openssl", ["s_client", "-connect", $"127.0.0.1:{port}", "-servername", "b.test", "-alpn", "h2,http/1.1"],
            TimeSpan.FromSeconds(20), stdin: "");
        Assert.Matches(@"subject=\s*CN\s*=\s*b\.test", s.Stdout);
        Assert.Contains("ALPN protocol: h2", s.Stdout);
        s = await Proc.RunAsync("openssl", ["s_client", "-connect", $"127.0.0.1:{port}", "-servername", "a.test"], TimeSpan.FromSeconds(20), stdin: "");
        Assert.Matches(@"subject=\s*CN\s*=\s*a\.test", s.Stdout);

        // X-Forwarded-Proto says https to the upstream.
        var e = await Proc.CurlAsync("-k", $"https://127.0.0.1:{port}/echo");
        Assert.Equal("https", Headers(e.Stdout).GetProperty("X-Forwarded-Proto").GetString());
    }

    [Fact]
    public async Task Https_upstream_is_verified_against_its_ca()
    {
        await using var o = await TestOrigin.StartAsync(https: true);
        var dir = Scratch.NewDir("ca");
        var (crt, _) = TestCerts.WritePem(dir, "origin", TestCerts.Localhost());
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                routes:
                  - { path: "/trusted/{**rest}", upstream: trusted, strip_prefix: /trusted }
                  - { path: "/insecure/{**rest}", upstream: insecure, strip_prefix: /insecure }
                  - { path: "/{**rest}", upstream: "https://localhost:{{o.Port}}" }
            upstreams:
              trusted: { targets: ["https://localhost:{{o.Port}}"], ca: {{crt}} }
              insecure: { targets: ["https://localhost:{{o.Port}}"], insecure_tls: true }
            {{AllowAll}}
            """);
        var url = gw.Url("site");
        Assert.Equal(200, (await Get($"{url}/trusted/100b")).Status);
        Assert.Equal(200, (await Get($"{url}/insecure/100b")).Status);
        // Self-signed and not trusted: the gateway refuses to talk to it.
        var (status, body) = await Get($"{url}/100b");
        Assert.Equal(502, status);
        Assert.Contains("upstream", body);
        Assert.Contains("Request id: <code>", body);
        Assert.Equal(2, o.Requests);
    }

    [Fact]
    public async Task WebSocket_echo_through_the_gateway()
    {
        await using var o = await TestOrigin.StartAsync(extra: app =>
        {
            app.UseWebSockets();
            app.Map("/ws", async (HttpContext ctx) =>
            {
                if (!ctx.WebSockets.IsWebSocketRequest) { ctx.Response.StatusCode = 400; return; }
                using var ws = await ctx.WebSockets.AcceptWebSocketAsync();
                var buf = new byte[64 * 1024];
                while (true)
                {
                    var r = await ws.ReceiveAsync(buf, ctx.RequestAborted);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", ctx.RequestAborted);
                        return;
                    }
                    await ws.SendAsync(buf.AsMemory(0, r.Count), r.MessageType, r.EndOfMessage, ctx.RequestAborted);
                }
            });
        });
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            policies:
              open:
                rules:
                  - allow: { path: /ws, upgrade: websocket }
                    name: websockets
                  - allow: {}
            """);
        // A general allow does not open a tunnel: only a rule that names the upgrade does.
        using (var refused = new ClientWebSocket())
        {
            var e = await Assert.ThrowsAsync<WebSocketException>(() => refused.ConnectAsync(new Uri($"ws://127.0.0.1:{gw.Port("site")}/other"), CancellationToken.None));
            Assert.Contains("403", e.Message);
        }
        using var ws = new ClientWebSocket();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{gw.Port("site")}/ws"), cts.Token);
        var recv = new byte[64 * 1024];
        for (int i = 0; i < 5; i++)
        {
            var msg = Encoding.UTF8.GetBytes($"hello {i} " + new string('x', i * 1000));
            await ws.SendAsync(msg, WebSocketMessageType.Text, true, cts.Token);
            int got = 0;
            WebSocketReceiveResult r;
            do
            {
                r = await ws.ReceiveAsync(new ArraySegment<byte>(recv, got, recv.Length - got), cts.Token);
                got += r.Count;
            }
            while (!r.EndOfMessage);
            Assert.Equal(msg, recv[..got]);
        }
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", cts.Token);
        Assert.Equal(WebSocketState.Closed, ws.State);
        // The tunnel is logged when it opens (the decision) and when it closes (with its bytes).
        var open = await gw.WaitForLogAsync(l => l.Str("request")?.Contains("/ws") == true && l.Str("event") == "request");
        Assert.Equal(101, open.Num("status"));
        Assert.Equal("websockets", open.Str("rule"));
        Assert.Contains("tunnel open", open.Str("reason"));
        var closed = await gw.WaitForLogAsync(l => l.Str("request")?.Contains("/ws") == true && l.Str("event") == "transfer");
        Assert.Contains("tunnel closed", closed.Str("reason"));
        Assert.True(closed.Num("bytes_in") > 0 && closed.Num("bytes_out") > 0, closed.ToString());
    }

    [Fact]
    public async Task Large_bodies_are_intact_both_ways()
    {
        const long size = 50L * 1024 * 1024;
        await using var o = await TestOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: open
                routes:
                  - { path: "/{**rest}", upstream: {{o.Url}} }
            {{AllowAll}}
            """);
        var dir = Scratch.NewDir("big");
        var file = Path.Combine(dir, "up.bin");
        var data = new byte[size];
        Random.Shared.NextBytes(data);
        await File.WriteAllBytesAsync(file, data);
        var expected = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data));
        data = [];

        // Upload with Content-Length, and chunked.
        var up = await Proc.CurlAsync("--data-binary", $"@{file}", $"{gw.Url("site")}/sha256");
        Assert.Equal($"{expected} {size}", up.Stdout);
        up = await Proc.CurlAsync("-H", "Transfer-Encoding: chunked", "--data-binary", $"@{file}", $"{gw.Url("site")}/sha256");
        Assert.Equal($"{expected} {size}", up.Stdout);

        // Download, with Content-Length and chunked.
        var down = Path.Combine(dir, "down.bin");
        foreach (var kind in new[] { "bytes", "chunked" })
        {
            var r = await Proc.CurlAsync("-o", down, $"{gw.Url("site")}/{kind}/{size}");
            Assert.True(r.ExitCode == 0, r.ToString());
            await using (var f = File.OpenRead(down))
                Assert.Equal(TestOrigin.PatternSha256(size), Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(f)));
        }
        // Bytes on the wire (access-log.md): the body plus its head and chunk framing.
        var line = await gw.WaitForLogAsync(l => l.Str("request")?.Contains("/chunked/") == true);
        Assert.InRange(line.Num("bytes_out"), size, size + size / 100);
        line = await gw.WaitForLogAsync(l => l.Str("request")?.Contains("/sha256") == true);
        Assert.InRange(line.Num("bytes_in"), size, size + size / 100);
        Directory.Delete(dir, true);
    }
}
