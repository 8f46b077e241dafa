using System.Net;
using System.Net.Sockets;
using Bastion.Identity;
using Bastion.Tests.Infrastructure;
using Bastion.Tests.Tcp;

namespace Bastion.Tests.Bypass;

/// <summary>
/// The setting of issue 9's penetration test, rebuilt: nginx as the normalising origin on 127.0.0.2 (the one
/// internal address the policy allows: "the lab"), a secret inside service on 127.0.0.1 that nothing may reach,
/// misbehaving socket servers, names in the gateway's own hosts file (never the machine's DNS), and one gateway
/// with every listener type in front of them.
/// </summary>
public sealed class BypassFixture : IAsyncLifetime
{
    public const string Lab = "127.0.0.2";
    public NginxOrigin Nginx { get; private set; } = null!;
    /// <summary>The inside service (127.0.0.1) that address rules must keep every client from.</summary>
    public TestOrigin Inside { get; private set; } = null!;
    public ScriptedOrigin ClTe { get; private set; } = null!;
    public ScriptedOrigin Unrequested101 { get; private set; } = null!;
    public ScriptedOrigin TwoTypes { get; private set; } = null!;
    public ScriptedOrigin TypeList { get; private set; } = null!;
    public ScriptedOrigin Recorder { get; private set; } = null!;
    public TestGateway Gw { get; private set; } = null!;

    /// <summary>Body of the response smuggled inside a CL+TE response: a client that sees it was fooled.</summary>
    public const string Forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nFORGED";

    public async Task InitializeAsync()
    {
        Nginx = await NginxOrigin.StartAsync(Lab);
        Inside = await TestOrigin.StartAsync();
        var chunk = "hello" + Forged;
        ClTe = ScriptedOrigin.Answering($"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{chunk.Length:x}\r\n{chunk}\r\n0\r\n\r\n", address: Lab);
        Unrequested101 = ScriptedOrigin.Answering("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: tunnel\r\n\r\n", address: Lab);
        TwoTypes = ScriptedOrigin.Answering("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: application/x-msdownload\r\nContent-Length: 2\r\n\r\nMZ", address: Lab);
        TypeList = ScriptedOrigin.Answering("HTTP/1.1 200 OK\r\nContent-Type: text/plain, application/x-msdownload\r\nContent-Length: 2\r\n\r\nMZ", address: Lab);
        Recorder = ScriptedOrigin.Answering("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nrecorded\n", address: Lab);
        var dir = Scratch.NewDir("bypass-certs");
        var (crt, key) = TestCerts.WritePem(dir, "site", TestCerts.Localhost());
        string N = Nginx.Url;
        Gw = await TestGateway.StartAsync($$"""
            resolver: { hosts: hosts.txt, dns: off }
            identity: { users: users.htpasswd }
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: out }
              - { name: web-pass, type: http-proxy, listen: 127.0.0.1:0, policy: out, ambiguous_paths: pass }
              - { name: web-strict, type: http-proxy, listen: 127.0.0.1:0, policy: out, conflicting_headers: refuse }
              - { name: socks, type: socks5, listen: 127.0.0.1:0, policy: out, socks4: true }
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: in
                routes: &routes
                  - { path: "/admin/{**rest}", upstream: {{N}}, strip_prefix: /admin, rewrite_prefix: /admin }
                  - { path: "/cl-te/{**rest}", upstream: {{ClTe.Url}} }
                  - { path: "/upgrade101/{**rest}", upstream: {{Unrequested101.Url}} }
                  - { path: "/two-types/{**rest}", upstream: {{TwoTypes.Url}} }
                  - { path: "/recorder/{**rest}", upstream: {{Recorder.Url}} }
                  - { path: "/echo", upstream: {{Inside.Url}} }
                  - { path: "/{**rest}", upstream: {{N}} }
              - { name: site-strict, type: http-reverse, listen: 127.0.0.1:0, policy: in, conflicting_headers: refuse, routes: *routes }
              - { name: site-tls, type: http-reverse, listen: 127.0.0.1:0, policy: in, tls: { cert: {{crt}}, key: {{key}} }, routes: *routes }
            policies:
              out:
                rules:
                  - deny: { host: "@private", not: { host: {{Lab}} } }
                    name: ssrf
                    reason: inside address
                  - deny: { path: "/admin/**" }
                    name: no-admin
                  - deny: { url: "~\\.exe$" }
                    name: no-exe
                  - deny: { host: "cdn*.glob.test" }
                    name: no-cdn
                  - deny: { header: { X-Debug: "1" } }
                    name: no-debug
                  - deny: { content_type: "application/x-*" }
                    name: no-binaries
                  - allow: {}
                    name: rest
              in:
                rules:
                  - deny: { path: "/admin/**" }
                    name: no-admin
                  - deny: { url: "~\\.exe$" }
                    name: no-exe
                  - deny: { host: "~^secret[0-9]\\.site\\.test$" }
                    name: no-secret
                  - deny: { header: { X-Debug: "1" } }
                    name: no-debug
                  - deny: { content_type: "application/x-*" }
                    name: no-binaries
                  - allow: { path: "/upgrade101/**", upgrade: websocket }
                    name: lab-websockets
                  - allow: {}
                    name: rest
            """, new Dictionary<string, string>
        {
            ["hosts.txt"] = $"127.0.0.1 inside.test secret.test\n{Lab} lab.test cdn1.glob.test\n",
            ["users.htpasswd"] = $"alice:{Htpasswd.HashBcrypt("secret", 4)}\n",
        });
    }

    public async Task DisposeAsync()
    {
        await Gw.DisposeAsync();
        await Nginx.DisposeAsync();
        await Inside.DisposeAsync();
        foreach (var o in new[] { ClTe, Unrequested101, TwoTypes, TypeList, Recorder }) await o.DisposeAsync();
    }

    /// <summary>`bastion explain` on this gateway's configuration: the verdict it prints and its exit code.</summary>
    public async Task<(bool Allowed, string Output)> ExplainAsync(string listener, params string[] request)
    {
        var r = await Proc.BastionAsync(["explain", "-c", Gw.ConfigPath, "--listener", listener, .. request]);
        Assert.True(r.ExitCode is 0 or 1, r.ToString());
        return (r.ExitCode == 0, r.Stdout);
    }
}

/// <summary>SOCKS bytes for the bypass tests.</summary>
static class SocksClient
{
    public static async Task<Socket> GreetAsync(int port)
    {
        var s = await Sock.ConnectAsync(port);
        await s.SendAsync(new byte[] { 5, 1, 0 });
        Assert.Equal(new byte[] { 5, 0 }, await s.ReadExactlyAsync(2));
        return s;
    }

    public static byte[] Domain(byte cmd, string host, int port) =>
        [5, cmd, 0, 3, (byte)host.Length, .. System.Text.Encoding.ASCII.GetBytes(host), (byte)(port >> 8), (byte)port];

    public static byte[] V4(byte cmd, IPAddress ip, int port) =>
        [5, cmd, 0, 1, .. ip.GetAddressBytes(), (byte)(port >> 8), (byte)port];

    /// <summary>SOCKS5 reply code of a CONNECT.</summary>
    public static async Task<byte> ConnectAsync(int port, byte[] request)
    {
        using var s = await GreetAsync(port);
        await s.SendAsync(request);
        var head = await s.ReadExactlyAsync(4);
        return head[1];
    }

    /// <summary>SOCKS4a CONNECT to a name: the reply code (90 granted, 91 rejected).</summary>
    public static async Task<byte> Socks4aAsync(int port, string host, int targetPort)
    {
        using var s = await Sock.ConnectAsync(port);
        await s.SendAsync((byte[])[4, 1, (byte)(targetPort >> 8), (byte)targetPort, 0, 0, 0, 1, .. "u"u8, 0, .. System.Text.Encoding.ASCII.GetBytes(host), 0]);
        var reply = await s.ReadExactlyAsync(8);
        return reply[1];
    }
}
