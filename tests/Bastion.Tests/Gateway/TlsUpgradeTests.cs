using System.Buffers;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Bastion.Gateway;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Gateway;

/// <summary>
/// STARTTLS-style upgrades in the middle of a session. Plaintext the client pipelined behind the upgrade command
/// must never be read after the handshake as if it had come over TLS (CVE-2011-0411).
/// </summary>
public class TlsUpgradeTests
{
    static SslServerAuthenticationOptions ServerOptions => new() { ServerCertificate = TestCerts.Localhost() };

    static SslClientAuthenticationOptions ClientOptions => new()
    {
        TargetHost = "localhost",
        RemoteCertificateValidationCallback = (_, _, _, _) => true,
    };

    [Fact]
    public async Task Plaintext_pipelined_after_STARTTLS_is_discarded_and_counted_never_read_after_the_handshake()
    {
        var (client, gw) = await SocketPairs.CreateAsync();
        using var _ = client;
        await using var t = Transport.FromSocket(gw);
        var injected = "MAIL FROM:<attacker@evil.example>\r\n";
        await client.SendAsync(Encoding.ASCII.GetBytes("STARTTLS\r\n" + injected), SocketFlags.None);

        var lines = new LineReader(t.Input, 512);
        var cmd = await lines.ReadAsync(default);
        Assert.Equal("STARTTLS", Encoding.ASCII.GetString(cmd.Line.Span));
        Assert.True(lines.HasBuffered);   // what a protocol checks to refuse or log it
        t.Output.Write("220 ready\r\n"u8);
        await t.Output.FlushAsync();

        var clientSide = Task.Run(async () =>
        {
            var ns = new NetworkStream(client, ownsSocket: false);
            var reply = new byte[11];
            await ns.ReadExactlyAsync(reply);
            var tls = new SslStream(ns);
            await tls.AuthenticateAsClientAsync(ClientOptions);
            await tls.WriteAsync("EHLO good\r\n"u8.ToArray());
            await tls.FlushAsync();
            return tls;
        });
        var up = await t.UpgradeToServerTlsAsync(ServerOptions, TimeSpan.FromSeconds(10), default);
        Assert.True(up.Ok, up.Error);
        Assert.Equal(injected.Length, up.DiscardedBytes);
        await using var tlsClient = await clientSide;

        var after = new LineReader(t.Input, 512);
        var first = await after.ReadAsync(default);
        Assert.Equal("EHLO good", Encoding.ASCII.GetString(first.Line.Span));
        Assert.False(after.HasBuffered);
    }

    [Fact]
    public async Task Nothing_pipelined_nothing_discarded_and_both_sides_can_upgrade()
    {
        var (a, b) = await SocketPairs.CreateAsync();
        await using var server = Transport.FromSocket(a);
        await using var client = Transport.FromSocket(b);
        client.Output.Write("STARTTLS\r\n"u8);
        await client.Output.FlushAsync();
        var cmd = await new LineReader(server.Input, 64).ReadAsync(default);
        Assert.Equal(LineStatus.Line, cmd.Status);

        var s = server.UpgradeToServerTlsAsync(ServerOptions, TimeSpan.FromSeconds(10), default).AsTask();
        var c = client.UpgradeToClientTlsAsync(ClientOptions, TimeSpan.FromSeconds(10), default).AsTask();
        var (su, cu) = (await s, await c);
        Assert.Equal((true, 0, true, 0), (su.Ok, su.DiscardedBytes, cu.Ok, cu.DiscardedBytes));

        client.Output.Write("over tls\r\n"u8);
        await client.Output.FlushAsync();
        var line = await new LineReader(server.Input, 64).ReadAsync(default);
        Assert.Equal("over tls", Encoding.ASCII.GetString(line.Line.Span));
    }

    [Fact]
    public async Task A_peer_that_never_handshakes_times_out_with_a_reason()
    {
        var (a, b) = await SocketPairs.CreateAsync();
        using var _ = b;
        await using var server = Transport.FromSocket(a);
        var up = await server.UpgradeToServerTlsAsync(ServerOptions, TimeSpan.FromMilliseconds(300), default);
        Assert.False(up.Ok);
        Assert.Contains("TLS handshake", up.Error);
    }
}
