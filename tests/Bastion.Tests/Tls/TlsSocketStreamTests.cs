using System.Net;
using System.Net.Sockets;
using Bastion.Gateway.Tls;

namespace Bastion.Tests.Tls;

/// <summary>The socket under an inspected tunnel's SslStream: replays what was peeked, answers zero-byte reads at once.</summary>
public sealed class TlsSocketStreamTests
{
    static async Task<(Socket A, Socket B)> PairAsync()
    {
        using var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        l.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        l.Listen();
        var a = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = l.AcceptAsync();
        await a.ConnectAsync(l.LocalEndPoint!);
        return (a, await accept);
    }

    [Fact]
    public async Task The_prefix_comes_first_then_the_socket_and_a_zero_byte_read_neither_waits_nor_consumes()
    {
        var (a, b) = await PairAsync();
        using var _a = a;
        using var _b = b;
        var s = new TlsSocketStream(b, "hel"u8.ToArray());
        var buf = new byte[16];

        // Nothing has been sent yet: a zero-byte read returns at once instead of waiting for data.
        var zero = s.ReadAsync(Memory<byte>.Empty);
        Assert.True(zero.IsCompletedSuccessfully);
        Assert.Equal(0, await zero);

        Assert.Equal(2, await s.ReadAsync(buf.AsMemory(0, 2)));
        Assert.Equal("he"u8.ToArray(), buf[..2]);
        Assert.Equal(1, await s.ReadAsync(buf));
        Assert.Equal((byte)'l', buf[0]);

        await a.SendAsync("lo"u8.ToArray());
        int n = 0;
        while (n < 2) n += await s.ReadAsync(buf.AsMemory(n));
        Assert.Equal("lo"u8.ToArray(), buf[..2]);

        await s.WriteAsync("back"u8.ToArray());
        n = 0;
        while (n < 4) n += await a.ReceiveAsync(buf.AsMemory(n), SocketFlags.None);
        Assert.Equal("back"u8.ToArray(), buf[..4]);

        a.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await s.ReadAsync(buf));
    }

    [Fact]
    public async Task A_reset_connection_fails_reads_and_writes_with_IOException_as_NetworkStream_does()
    {
        var (a, b) = await PairAsync();
        using var _b = b;
        var s = new TlsSocketStream(b);
        var pending = s.ReadAsync(new byte[16]).AsTask();
        a.LingerState = new LingerOption(true, 0);
        a.Close();
        await Assert.ThrowsAsync<IOException>(() => pending);
        await Assert.ThrowsAsync<IOException>(async () =>
        {
            for (int i = 0; i < 100; i++) await s.WriteAsync(new byte[64 * 1024]);
        });
    }
}
