using System.Net;
using System.Net.Sockets;
using Bastion.Protocols.Http.Io;

namespace Bastion.Tests.Http1;

/// <summary>
/// The epoll engine's two waits per socket against real loopback sockets: a receive that waits for its edge, edges
/// racing receives issued from other threads, sends that fill the socket and finish on its writable edge, wake-ups
/// by shutdown and close from other threads, and non-blocking connects.
/// </summary>
public sealed class EpollEngineTests
{
    static async Task<(Socket Server, Socket Client, Socket Listener)> PairAsync()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await client.ConnectAsync(listener.LocalEndPoint!);
        var server = await listener.AcceptAsync();
        return (server, client, listener);
    }

    [Fact]
    public async Task A_receive_waits_for_its_edge_and_then_gets_the_bytes()
    {
        var (server, client, listener) = await PairAsync();
        using var _ = listener;
        using var __ = client;
        var io = new EpollDuplex(server);
        var buf = new byte[64];
        var pending = io.ReceiveAsync(buf);
        Assert.False(pending.IsCompleted);
        client.Send("hello"u8);
        int n = await pending.AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("hello"u8.ToArray(), buf.AsSpan(0, n).ToArray());
        await io.DisposeAsync();
    }

    [Fact]
    public async Task Receives_from_other_threads_racing_edges_lose_no_byte_and_no_wake_up()
    {
        var (server, client, listener) = await PairAsync();
        using var _ = listener;
        using var __ = client;
        var io = new EpollDuplex(server);
        const int total = 4 << 20;
        var sent = new byte[total];
        new Random(7).NextBytes(sent);
        // Uneven writes from another thread; uneven small buffers (full ones keep the socket "ready") on this side,
        // each receive resumed on the pool so that receives start from threads other than the loop's.
        var writer = Task.Run(() =>
        {
            var rnd = new Random(8);
            for (int at = 0; at < total;)
            {
                int n = Math.Min(total - at, rnd.Next(1, 9000));
                client.Send(sent, at, n, SocketFlags.None);
                at += n;
            }
            client.Shutdown(SocketShutdown.Send);
        });
        var got = new byte[total + 1]; // one spare byte for the receive that sees the end
        var sizes = new Random(9);
        int have = 0;
        while (true)
        {
            int n = await io.ReceiveAsync(got.AsMemory(have, Math.Min(got.Length - have, sizes.Next(1, 5000))))
                .AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            if (n == 0) break;
            have += n;
            if (have % 3 == 0) await Task.Yield();
        }
        await writer;
        Assert.Equal(total, have);
        Assert.True(sent.AsSpan().SequenceEqual(got.AsSpan(0, total)));
        await io.DisposeAsync();
    }

    [Fact]
    public async Task A_send_larger_than_the_socket_takes_finishes_on_writable_edges_with_every_byte()
    {
        var (server, client, listener) = await PairAsync();
        using var _ = listener;
        using var __ = client;
        var io = new EpollDuplex(server);
        var data = new byte[32 << 20];
        new Random(3).NextBytes(data);
        var send = io.SendAsync(data).AsTask();
        Assert.False(send.IsCompleted); // 32 MiB does not fit in a loopback socket's buffers: it waited for EPOLLOUT
        var got = new byte[data.Length];
        int have = 0;
        while (have < got.Length)
        {
            int n = await client.ReceiveAsync(got.AsMemory(have), SocketFlags.None);
            Assert.True(n > 0);
            have += n;
        }
        await send.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(data.AsSpan().SequenceEqual(got));
        await io.DisposeAsync();
    }

    [Fact]
    public async Task Shutdown_and_close_from_another_thread_end_a_pending_receive()
    {
        var (server, client, listener) = await PairAsync();
        using var _ = listener;
        using var __ = client;
        var io = new EpollDuplex(server);
        var pending = io.ReceiveAsync(new byte[16]);
        Assert.False(pending.IsCompleted);
        await Task.Run(io.ShutdownReceive);
        Assert.Equal(0, await pending.AsTask().WaitAsync(TimeSpan.FromSeconds(10)));

        var (server2, client2, listener2) = await PairAsync();
        using var ___ = listener2;
        using var ____ = client2;
        var io2 = new EpollDuplex(server2);
        var pending2 = io2.ReceiveAsync(new byte[16]).AsTask();
        Assert.False(pending2.IsCompleted);
        await Task.Run(io2.Abort);
        var e = await Assert.ThrowsAnyAsync<Exception>(() => pending2.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(Duplex.IsIoError(e), e.ToString());
        await io.DisposeAsync();
        await io2.DisposeAsync();
    }

    [Fact]
    public async Task Connects_without_blocking_and_reports_a_refused_port()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var (io, error, _) = await EpollEngine.ConnectAsync([IPAddress.Loopback], port, TimeSpan.FromSeconds(10), default);
        Assert.Equal(SocketError.Success, error);
        using var accepted = await listener.AcceptAsync();
        Assert.Equal(accepted.LocalEndPoint, io!.Socket!.RemoteEndPoint);
        await io.SendAsync("ping"u8.ToArray());
        var buf = new byte[4];
        Assert.Equal(4, await accepted.ReceiveAsync(buf, SocketFlags.None));
        Assert.Equal("ping"u8.ToArray(), buf);
        await io.DisposeAsync();

        // A port nobody listens on (the one just freed).
        listener.Close();
        var (none, refused, message) = await EpollEngine.ConnectAsync([IPAddress.Loopback], port, TimeSpan.FromSeconds(10), default);
        Assert.Null(none);
        Assert.Equal(SocketError.ConnectionRefused, refused);
        Assert.NotNull(message);
    }
}
