using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Tls;

/// <summary>
/// An inspected tunnel's sockets stay on the gateway's epoll engine, whose receives take no token: the timeouts
/// (no ClientHello, an unfinished handshake, an idle tunnel) must still reach a receive waiting there and close the
/// tunnel, and the gateway must go on serving.
/// </summary>
public sealed class InspectionEngineTests(InspectionFixture f) : IClassFixture<InspectionFixture>
{
    const string Limits = "    limits: { header_timeout: 1s, idle_timeout: 2s }";

    /// <summary>Opens a CONNECT tunnel to an inspected name and reads the 200 behind it.</summary>
    async Task<(TcpClient Tcp, NetworkStream Stream)> ConnectAsync(TestGateway gw, string host)
    {
        var tcp = new TcpClient();
        await tcp.ConnectAsync(gw.EndPoint("web"));
        var s = tcp.GetStream();
        await s.WriteAsync(Encoding.ASCII.GetBytes($"CONNECT {host}:{f.Origin.Port} HTTP/1.1\r\nHost: {host}:{f.Origin.Port}\r\n\r\n"));
        var head = new List<byte>();
        var one = new byte[1];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!Encoding.ASCII.GetString([.. head]).EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            Assert.Equal(1, await s.ReadAsync(one, cts.Token));
            head.Add(one[0]);
        }
        Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString([.. head]));
        return (tcp, s);
    }

    /// <summary>Reads until the gateway closes (a reset counts): true when that happened within the bound.</summary>
    static async Task<bool> ClosedWithinAsync(Stream s, TimeSpan bound)
    {
        using var cts = new CancellationTokenSource(bound);
        var buf = new byte[4096];
        try
        {
            while (await s.ReadAsync(buf, cts.Token) > 0) { }
            return true;
        }
        catch (OperationCanceledException) { return false; }
        catch (IOException) { return true; }
    }

    async Task StillServesAsync(TestGateway gw)
    {
        var r = await Proc.CurlAsync(["-x", gw.Url("web"), "--cacert", f.CaCert, $"https://shop.localhost:{f.Origin.Port}/100b"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(new string('x', 99) + "\n", r.Stdout);
    }

    [Fact]
    public async Task A_tunnel_with_no_client_hello_is_refused_after_the_header_timeout()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml(listener: Limits));
        var (tcp, s) = await ConnectAsync(gw, "shop.localhost");
        using (tcp)
        {
            Assert.True(await ClosedWithinAsync(s, TimeSpan.FromSeconds(15)), "the tunnel was not closed");
        }
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"CONNECT shop.localhost:{f.Origin.Port}");
        Assert.Equal("refused", line.Str("tls"));
        Assert.Contains("no ClientHello within 1s", line.Str("reason"));
        await StillServesAsync(gw);
    }

    [Fact]
    public async Task A_client_that_stops_in_the_middle_of_the_handshake_is_cut_off_after_the_header_timeout()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml(listener: Limits));
        var (tcp, s) = await ConnectAsync(gw, "shop.localhost");
        using (tcp)
        {
            // A real ClientHello (openssl's), then silence: the gateway answers it and waits for the rest.
            var hello = await HelloCapture.OpenSslAsync("-servername", "shop.localhost");
            await s.WriteAsync(hello);
            Assert.True(await ClosedWithinAsync(s, TimeSpan.FromSeconds(15)), "the tunnel was not closed");
        }
        var closed = await gw.WaitForLogAsync(l => l.Str("event") == "connection" && (l.Str("reason") ?? "").Contains("did not finish the TLS handshake"));
        Assert.Contains("shop.localhost", closed.Str("reason"));
        await StillServesAsync(gw);
    }

    [Fact]
    public async Task An_idle_keep_alive_tunnel_is_closed_after_the_idle_timeout_and_its_request_logged()
    {
        await using var gw = await TestGateway.StartAsync(f.Yaml(listener: Limits));
        var (tcp, s) = await ConnectAsync(gw, "shop.localhost");
        using (tcp)
        {
            using var ca = X509Certificate2.CreateFromPem(File.ReadAllText(f.CaCert));
            await using var tls = new SslStream(s, leaveInnerStreamOpen: true);
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "shop.localhost",
                CertificateChainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, CustomTrustStore = { ca }, RevocationMode = X509RevocationMode.NoCheck },
            });
            await tls.WriteAsync(Encoding.ASCII.GetBytes($"GET /100b HTTP/1.1\r\nHost: shop.localhost:{f.Origin.Port}\r\n\r\n"));
            var got = new List<byte>();
            var buf = new byte[4096];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (!Encoding.ASCII.GetString([.. got]).EndsWith(new string('x', 99) + "\n", StringComparison.Ordinal))
            {
                int n = await tls.ReadAsync(buf, cts.Token);
                Assert.True(n > 0, "the response did not come");
                got.AddRange(buf.AsSpan(0, n));
            }
            Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString([.. got]));
            // Then nothing: the tunnel's keep-alive wait ends at the idle timeout, with TLS's close or the socket's.
            Assert.True(await ClosedWithinAsync(tls, TimeSpan.FromSeconds(15)), "the idle tunnel was not closed");
        }
        var line = await gw.WaitForLogAsync(l => l.Str("request") == $"GET https://shop.localhost:{f.Origin.Port}/100b");
        Assert.Equal(200, line.Num("status"));
        await gw.WaitForLogAsync(l => l.Str("event") == "connection" && l.Str("request") is { } r && r.StartsWith("CONNECT shop.localhost", StringComparison.Ordinal));
        await StillServesAsync(gw);
    }
}
